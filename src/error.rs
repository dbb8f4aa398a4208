//! Error kinds that decide the exit code, and the exit codes themselves.
//!
//! Everything is an `anyhow::Error`; a few marker types in the chain tell
//! `main` which exit code to use:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | "changed" / "check failed" / "completed with warnings", where a command has that meaning |
//! | 2 | usage or input error (bad flag, malformed descriptor or config, disk too small) |
//! | 3 | runtime failure (a tool failed, a device vanished, I/O error) |
//! | 4 | a backup or archive was written, but some files changed while they were read (named in its manifest and the report) |

pub const EXIT_OK: i32 = 0;
pub const EXIT_CHANGED: i32 = 1;
pub const EXIT_INPUT: i32 = 2;
pub const EXIT_FAILURE: i32 = 3;
/// The backup is written and usable, but files changed while read: their
/// copies may be inconsistent (use snapshots or hooks). Wins over 1.
pub const EXIT_CHANGED_WHILE_READ: i32 = 4;

/// The user gave us something we cannot use: a bad descriptor, config,
/// argument, or a disk that cannot hold the layout. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Shorthand: an `anyhow::Error` that exits with code 2.
pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// Bail out with an input error (exit code 2).
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::input_error(format!($($arg)*)))
    };
}

/// The exit code for an error: 2 when any cause is an input error, else 3.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.downcast_ref::<InputError>().is_some()) {
        EXIT_INPUT
    } else {
        EXIT_FAILURE
    }
}
