//! Every example descriptor in layouts/ loads and validates, and invalid
//! descriptors give precise errors naming the item and the line.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use rescue::layout::Layout;

fn error_of(text: &str) -> String {
    format!("{:#}", Layout::from_toml(text).expect_err("should be invalid"))
}

fn base() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap()
}

#[test]
fn every_example_layout_is_valid_and_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let l = Layout::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        // What we write, we read back identically.
        let again = Layout::from_toml(&l.to_toml().unwrap()).unwrap();
        assert_eq!(l, again, "{}", p.display());
        n += 1;
    }
    assert!(n >= 6, "expected at least six example layouts, found {n}");
}

#[test]
fn unknown_key_names_key_and_line() {
    let t = base().replace("label = \"root\"\n\n[[partition]]", "label = \"root\"\ncolour = \"blue\"\n\n[[partition]]");
    let e = error_of(&t);
    assert!(e.contains("unknown field `colour`"), "{e}");
    let line = t.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    assert!(e.contains(&format!("line {line}")), "{e}");
}

#[test]
fn wrong_version_says_which() {
    let e = error_of(&base().replace("version = 1", "version = 2"));
    assert!(e.contains("version 2 is not supported"), "{e}");
    assert!(e.contains("reads version 1"), "{e}");
    let e = error_of(&base().replace("version = 1\n", ""));
    assert!(e.contains("missing `version = 1`"), "{e}");
}

#[test]
fn dangling_reference_names_item_and_line() {
    let t = base().replace("[[swap]]\ndevice = \"vda3\"", "[[swap]]\ndevice = \"vda9\"");
    let e = error_of(&t);
    assert!(e.contains("swap on `vda9` refers to `vda9`"), "{e}");
    let line = t.lines().position(|l| l == "device = \"vda9\"").unwrap() + 1;
    assert!(e.contains(&format!("line {line}")), "{e}");
    let e = error_of(&base().replace("disk = \"vda\"\nnumber = 3", "disk = \"vdz\"\nnumber = 3"));
    assert!(e.contains("partition `vda3` refers to disk `vdz`"), "{e}");
}

#[test]
fn overlapping_partitions_are_named() {
    // vda3 moved to start inside vda2.
    let t = base().replace("start = 37748736", "start = 30000000");
    let e = error_of(&t);
    assert!(e.contains("partition `vda3` (sectors 30000000-"), "{e}");
    assert!(e.contains("overlaps partition `vda2`"), "{e}");
    let line = t.lines().position(|l| l == "start = 30000000").unwrap() + 1;
    assert!(e.contains(&format!("line {line}")), "{e}");
}

#[test]
fn partition_beyond_disk_end() {
    let t = base().replace("size = 4194271", "size = 4194400");
    let e = error_of(&t);
    assert!(e.contains("partition `vda3` ends at sector 41943136 beyond the end of disk `vda`"), "{e}");
    let line = t.lines().position(|l| l == "size = 4194400").unwrap() + 1;
    assert!(e.contains(&format!("line {line}")), "{e}");
}

#[test]
fn device_used_twice() {
    let t = base() + "\n[[swap]]\ndevice = \"vda2\"\n";
    let e = error_of(&t);
    assert!(e.contains("swap on `vda2` uses `vda2`, which ext4 filesystem on `vda2` already uses"), "{e}");
}

#[test]
fn malformed_toml_gives_line() {
    let e = error_of("version = 1\n[host\nhostname = 3\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn cli_validate_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_rescue");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, base().replace("version = 1", "version = 7")).unwrap();
    let out = std::process::Command::new(bin).args(["layout", "validate"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "input error exits 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 7 is not supported"));
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/md-raid1-ext4.toml");
    let out = std::process::Command::new(bin).args(["layout", "show"]).arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("md0  raid1"), "{s}");
    assert!(s.contains("on /"), "{s}");
}
