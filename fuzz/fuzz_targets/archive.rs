//! The archive reader on any bytes: list, verify, and extract into a
//! temporary directory. Errors are fine; a panic, hang, abort or a write
//! outside the target is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescue::archive::{extract, list, verify, ExtractOptions};

fuzz_target!(|data: &[u8]| {
    let _ = list(std::io::Cursor::new(data.to_vec()), &mut std::io::sink());
    let _ = verify(std::io::Cursor::new(data.to_vec()));
    let Ok(dir) = tempfile::tempdir() else { return };
    let target = dir.path().join("target");
    // Beside the target: an incremental record (dumpdir) must never remove it.
    let _ = std::fs::write(dir.path().join("sentinel"), b"x");
    let opts = ExtractOptions { target: target.clone(), progress: false, total_bytes: None, keep_manifest: true, incremental: true };
    let _ = extract(std::io::Cursor::new(data.to_vec()), &opts);
    // Nothing beside the target: extraction never leaves it.
    let names: Vec<_> = std::fs::read_dir(dir.path()).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(names.len() <= 2, "extraction wrote outside its target: {names:?}");
    assert!(dir.path().join("sentinel").exists(), "extraction removed a file beside its target");
});
