//! The commands a user runs, one module each. A workflow reads the config,
//! calls the library modules in order, and reports.

pub mod archive;
pub mod checklayout;
pub mod drill;
pub mod dump;
pub mod format;
pub mod layoutcmd;
pub mod mkbackup;
pub mod mkbackuponly;
pub mod mkrescue;
pub mod package;
pub mod recover;
pub mod restoreonly;
pub mod savelayout;
pub mod schedule;
