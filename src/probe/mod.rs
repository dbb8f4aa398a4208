//! Capture: read the running system (or a recorded fixture of one) into a
//! [`Layout`](crate::layout::Layout).
//!
//! `source` says where answers come from (live, fixture, recording), `parse`
//! turns tool output into data, `capture` assembles the descriptor.

pub mod capture;
pub mod network;
pub mod parse;
pub mod source;

pub use capture::{capture, Capture, CaptureOptions};
