//! Logging: human-readable lines on stderr (level from -v/-q) and a full
//! debug log appended to a file under the log directory.

use std::path::Path;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// Set up logging. `verbosity` is -q=-1, default 0, -v=1, -vv=2.
/// A log directory we cannot write is not fatal (a user can run
/// `rescue layout show` without root): we say so at debug level only.
/// The log file every command appends to, in `log-dir`.
pub const LOG_FILE: &str = "rescue.log";

pub fn init(verbosity: i8, log_dir: Option<&Path>, command: &str) {
    let level = match verbosity {
        i8::MIN..=-1 => LevelFilter::ERROR,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let stderr_layer = fmt::layer().with_writer(std::io::stderr).without_time().with_target(false).with_filter(level);
    let file = log_dir.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join(LOG_FILE)).ok()
    });
    let file_layer = file.map(|f| fmt::layer().with_writer(std::sync::Mutex::new(f)).with_ansi(false).with_target(false).with_filter(LevelFilter::DEBUG));
    let _ = tracing_subscriber::registry().with(stderr_layer).with(file_layer).try_init();
    tracing::debug!(command, version = env!("CARGO_PKG_VERSION"), "rescue started");
}
