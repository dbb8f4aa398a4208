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

/// The log directory (0700) and the log file in it (0600), also when they
/// existed with wider modes: the log holds every command line and the
/// recovery's details, which are nobody else's business.
pub fn open_log(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(dir.join(LOG_FILE))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

pub fn init(verbosity: i8, log_dir: Option<&Path>, command: &str) {
    let level = match verbosity {
        i8::MIN..=-1 => LevelFilter::ERROR,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let stderr_layer = fmt::layer().with_writer(std::io::stderr).without_time().with_target(false).with_filter(level);
    let file = log_dir.and_then(|dir| open_log(dir).ok());
    let file_layer = file.map(|f| fmt::layer().with_writer(std::sync::Mutex::new(f)).with_ansi(false).with_target(false).with_filter(LevelFilter::DEBUG));
    let _ = tracing_subscriber::registry().with(stderr_layer).with(file_layer).try_init();
    tracing::debug!(command, version = env!("CARGO_PKG_VERSION"), "rescue started");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_log_is_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("log");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join(LOG_FILE), "old\n").unwrap();
        std::fs::set_permissions(dir.join(LOG_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        open_log(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        let fresh = d.path().join("a/b");
        open_log(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
