//! `rescue`: bare-metal recovery for Linux.
//!
//! The modules follow the data: `layout` (the descriptor) ← `probe` (capture
//! from the running system); `workflow` holds the commands a user runs.

pub mod apply;
pub mod archive;
pub mod backup;
pub mod boot;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod context;
pub mod drill;
pub mod error;
pub mod hooks;
pub mod image;
pub mod inventory;
pub mod layout;
pub mod logging;
pub mod needs;
pub mod plan;
pub mod probe;
pub mod secrets;
pub mod target;
pub mod util;
pub mod workflow;
