//! The `rescue` binary: parse the command line, run, print the error chain once.

fn main() {
    // The second half of a backup stopped by SIGINT/SIGTERM: it re-executes
    // itself to remove what it left (see backup::cleanup).
    if let Some(code) = rescue::backup::cleanup::finish_after_signal() {
        std::process::exit(code);
    }
    std::process::exit(rescue::cli::main());
}
