//! The `rescue` binary: parse the command line, run, print the error chain once.

fn main() {
    std::process::exit(rescue::cli::main());
}
