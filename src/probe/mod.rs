//! Capture: read the running system (or a recorded fixture of one) into a
//! [`Layout`](crate::layout::Layout).

pub mod source;
