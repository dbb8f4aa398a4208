//! The config parser on any text: errors are fine; a panic or hang is a
//! finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescue::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_toml(text);
});
