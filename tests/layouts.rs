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

fn lvm() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap()
}

fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).unwrap_or_else(|| panic!("{line:?} not in the descriptor")) + 1
}

#[test]
fn mount_paths_that_are_not_absolute_and_normalized_are_refused_with_the_line() {
    for bad in ["/../../../../srv/x", "/data/../../../../../etc", "/srv/./x", "//srv", "/srv/", "srv"] {
        let t = base().replace("[[mount]]\npath = \"/\"", &format!("[[mount]]\npath = \"{bad}\""));
        let e = error_of(&t);
        assert!(e.contains(&format!("mount `{bad}`: the mount point must be an absolute, normalized path")), "{bad}: {e}");
        assert!(e.contains(&format!("line {}", line_of(&t, &format!("path = \"{bad}\"")))), "{bad}: {e}");
    }
    // The other paths of the descriptor that are joined to a root.
    let t = base().replacen("[[excluded]]\npath = \"", "[[excluded]]\npath = \"/x/../", 1);
    let e = error_of(&t);
    assert!(e.contains("excluded `/x/../") && e.contains(".. component"), "{e}");
    let sv = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/btrfs-subvolumes.toml")).unwrap();
    let t = sv.replace("path = \"@home\"", "path = \"@home/../../x\"");
    let e = error_of(&t);
    assert!(e.contains("btrfs subvolume `@home/../../x`") && e.contains(&format!("line {}", line_of(&t, "path = \"@home/../../x\""))), "{e}");
    let t = sv.replace("default-subvolume = \"@\"", "default-subvolume = \"../@\"");
    assert!(error_of(&t).contains("default-subvolume `../@` must be a plain path"), "{}", error_of(&t));
}

#[test]
fn a_hostname_that_is_not_a_host_name_is_refused() {
    for bad in ["..", ".", "a/b", "web..1", "", "-x"] {
        let t = base().replacen("hostname = \"", &format!("hostname = \"{bad}\" #"), 1);
        let e = error_of(&t);
        assert!(e.contains(&format!("hostname `{bad}` is not a host name")), "{bad}: {e}");
        let line = t.lines().position(|l| l.starts_with("hostname =")).unwrap() + 1;
        assert!(e.contains(&format!("line {line}")), "{bad}: {e}");
    }
    for good in ["web1", "db-2.example.com", "host_x"] {
        assert!(rescue::layout::is_valid_hostname(good), "{good}");
    }
}

#[test]
fn lvm_cycles_are_refused_with_the_line() {
    // A PV of vg0 on an LV of vg0.
    let inner = "[[lvm-lv]]\nvg = \"vg0\"\nname = \"inner\"\nuuid = \"Zx1cVb-2NmA-3sDf-4GhJ-5kLq-6WeR-7tYuIq\"\nsize = 1073741824\nsegment-type = \"linear\"\n";
    let pv = |dev: &str, vg: &str| format!("[[lvm-pv]]\ndevice = \"{dev}\"\nuuid = \"Xy3kLm-9aBc-DeFg-HiJk-LmNo-PqRs-TuVw13\"\nvg = \"{vg}\"\n");
    let t = format!("{}\n{inner}\n{}", lvm(), pv("vg0/inner", "vg0"));
    let e = error_of(&t);
    assert!(e.contains("LVM physical volume on `vg0/inner` of volume group `vg0` sits on `vg0/inner`") && e.contains("cycle"), "{e}");
    assert!(e.contains(&format!("line {}", line_of(&t, "device = \"vg0/inner\""))), "{e}");
    // A longer one: vg0 on vg1's LV, vg1 on vg0's LV.
    let vg1 = "[[lvm-vg]]\nname = \"vg1\"\nuuid = \"Ab1cDe-2FgH-3iJk-4LmN-5oPq-6RsT-7uVwXz\"\nextent-size = 4194304\n";
    let a = "[[lvm-lv]]\nvg = \"vg1\"\nname = \"a\"\nuuid = \"Zx1cVb-2NmA-3sDf-4GhJ-5kLq-6WeR-7tYuIr\"\nsize = 1073741824\nsegment-type = \"linear\"\n";
    let t = format!("{}\n{inner}\n{vg1}\n{a}\n{}\n{}", lvm(), pv("vg1/a", "vg0"), pv("vg0/inner", "vg1"));
    let e = error_of(&t);
    assert!(e.contains("LVM physical volume on `vg1/a` of volume group `vg0` sits on `vg0/"), "{e}");
    assert!(e.contains(&format!("line {}", line_of(&t, "device = \"vg1/a\""))), "{e}");
}

#[test]
fn a_descriptor_that_is_not_utf8_is_an_input_error_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.toml");
    let mut bytes = base().into_bytes();
    let at = bytes.windows(8).position(|w| w == b"hostname").unwrap();
    bytes.splice(at..at, b"# caf\xe9\n".iter().copied());
    let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
    std::fs::write(&bad, &bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescue")).args(["layout", "validate"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not UTF-8") && err.contains(&format!("line {line}")), "{err}");
}
