//! The commands a user runs, one module each. A workflow reads the config,
//! calls the library modules in order, and reports.

pub mod checklayout;
pub mod dump;
pub mod layoutcmd;
pub mod savelayout;
pub mod format;
pub mod mkrescue;
pub mod schedule;
