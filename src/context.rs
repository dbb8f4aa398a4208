//! What every command runs with: the config and the global flags. The CLI
//! makes it; the workflows read it (and never import the CLI).

use std::path::PathBuf;

use crate::config::Config;

/// Everything a command needs from the global flags and the config.
pub struct Ctx {
    pub config: Config,
    pub config_path: PathBuf,
    pub json: bool,
    pub verbosity: i8,
}
