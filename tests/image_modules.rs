//! Kernel module closure on a fixture module directory
//! (tests/fixtures/image/modules/6.1.0-test).

use std::path::{Path, PathBuf};

use rescue::image::modules::{module_name, ModuleIndex};

fn index() -> ModuleIndex {
    ModuleIndex::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image/modules/6.1.0-test")).expect("module fixture loads")
}

#[test]
fn hard_and_soft_dependencies_are_followed() {
    let idx = index();
    assert_eq!(idx.version(), "6.1.0-test");
    let set = idx.closure(&["ext4"]);
    let names: Vec<&str> = set.modules.iter().map(String::as_str).collect();
    // ext4 -> crc16, mbcache, jbd2; jbd2 softdep pre: crypto-crc32c -> both providers.
    assert_eq!(names, ["crc16", "crc32c_generic", "crc32c_intel", "ext4", "jbd2", "mbcache"]);
    assert!(set.files.contains(&PathBuf::from("kernel/arch/x86/crypto/crc32c-intel.ko.xz")));
    assert!(set.unknown.is_empty() && set.builtin.is_empty());
}

#[test]
fn dashes_and_underscores_are_the_same_module() {
    let idx = index();
    let set = idx.closure(&["md-mod", "raid1"]);
    assert_eq!(set.modules.iter().map(String::as_str).collect::<Vec<_>>(), ["md_mod", "raid1"]);
    assert_eq!(module_name(Path::new("kernel/drivers/md/md-mod.ko.xz")), "md_mod");
    assert_eq!(module_name(Path::new("a/b/e1000.ko")), "e1000");
}

#[test]
fn builtin_unknown_and_alias_names() {
    let idx = index();
    let set = idx.closure(&["ahci", "nvme", "fs-xfs"]);
    assert!(set.builtin.contains("ahci"));
    assert!(set.unknown.contains("nvme"));
    assert!(set.modules.contains("xfs") && set.modules.contains("libcrc32c") && set.modules.contains("crc32c_generic"));
    // Nothing unrelated comes along.
    assert!(!set.modules.contains("snd"));
}

#[test]
fn all_lists_every_module() {
    let idx = index();
    let all = idx.all_names();
    assert_eq!(all.len(), 14);
    let set = idx.closure(&all);
    assert_eq!(set.files.len(), 14);
}

#[test]
fn missing_index_says_what_to_do() {
    let e = ModuleIndex::load(Path::new("/nonexistent/lib/modules/1.2.3")).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("modules.dep") && msg.contains("depmod"), "{msg}");
}
