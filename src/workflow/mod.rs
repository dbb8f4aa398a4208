//! The commands a user runs, one module each. A workflow reads the config,
//! calls the library modules in order, and reports.

pub mod checklayout;
pub mod dump;
pub mod layoutcmd;
pub mod savelayout;
