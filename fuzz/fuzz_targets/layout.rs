//! The layout descriptor parser and validator on any text: errors are
//! fine (they name the line); a panic or hang is a finding. A descriptor
//! that loads must also save.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescue::layout::Layout;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(layout) = Layout::from_toml(text) {
        let _ = layout.to_toml();
    }
});
