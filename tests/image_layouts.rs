//! What the example descriptors in layouts/ make the image carry: the
//! programs and kernel modules their storage stacks need.

use std::path::Path;

use rescue::image::initramfs::programs_for_layout;
use rescue::image::modules::modules_for_layout;
use rescue::layout::Layout;

fn load(name: &str) -> Layout {
    Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).expect("example layout loads")
}

#[test]
fn each_stack_brings_its_tools_and_modules() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("bios-gpt-ext4.toml", &["mkfs.ext4", "mkswap"], &["ext4"]),
        ("uefi-lvm-xfs.toml", &["lvm", "mkfs.xfs", "mkfs.vfat", "efibootmgr"], &["xfs", "dm_mod", "vfat"]),
        ("md-raid1-ext4.toml", &["mdadm", "mkfs.ext4"], &["md_mod", "raid1", "ext4"]),
        ("luks2-lvm.toml", &["cryptsetup", "lvm"], &["dm_crypt", "dm_mod"]),
        ("btrfs-subvolumes.toml", &["mkfs.btrfs", "btrfs"], &["btrfs"]),
    ];
    for (file, programs, modules) in cases {
        let l = load(file);
        let p = programs_for_layout(&l);
        let m = modules_for_layout(&l);
        for want in *programs {
            assert!(p.contains(want), "{file}: {want} not in {p:?}");
        }
        for want in *modules {
            assert!(m.iter().any(|x| x == want), "{file}: {want} not in {m:?}");
        }
    }
    // Nothing for stacks a layout does not use.
    let p = programs_for_layout(&load("bios-gpt-ext4.toml"));
    assert!(!p.contains(&"mdadm") && !p.contains(&"cryptsetup") && !p.contains(&"lvm"), "{p:?}");
}
