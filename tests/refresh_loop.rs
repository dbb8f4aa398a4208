//! As root on loop disks: the scheduled refresh keeps the rescue image true.
//! - `checklayout` ignores every kind of transient mount the host kernel can
//!   make (tmpfs, overlay, squashfs, FUSE, nsfs, a chroot's /proc going away,
//!   mounts under /run/user and a container runtime's directories, and
//!   `capture.exclude-mounts` patterns), and still counts real changes: a new
//!   mount of a recorded filesystem, a changed label, a resized filesystem, a
//!   new partition, a changed bootloader.
//! - `schedule`'s command line, run after a layout change, builds an image
//!   whose descriptor has the change, says which filesystem no backup holds
//!   (exit 1), and the next check passes.
//!
//! The disks and the root come from the config (`capture.disks`,
//! `capture.root`), as on a real system where the timer passes no flags.

#![allow(clippy::unwrap_used)]

mod common;
mod image_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{require_root, require_tools, rescue_bin, sh, LoopDisk};
use rescue::layout::Layout;

const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A config for the loop disk mounted at `root`, state and logs in `dir`.
fn write_config(dir: &Path, disk: &str, root: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("rescue.toml");
    let text = format!(
        "log-dir = \"{d}/log\"\nstate-dir = \"{d}/state\"\n[capture]\ndisks = [\"{disk}\"]\nroot = \"{r}\"\nexclude-mounts = [\"/var/cache/app/*\"]\n{extra}",
        d = dir.display(),
        r = root.display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn run(cfg: &Path, args: &[&str]) -> Output {
    Command::new(rescue_bin()).arg("--config").arg(cfg).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assert_unchanged(cfg: &Path, what: &str) {
    let o = run(cfg, &["checklayout"]);
    assert_eq!(o.status.code(), Some(0), "{what} must not count as a change:\n{}", text(&o));
}

/// `checklayout` says "changed" and names `item` (and `field`, if given).
fn assert_changed(cfg: &Path, what: &str, item: &str, field: Option<&str>) -> serde_json::Value {
    let o = run(cfg, &["checklayout"]);
    assert_eq!(o.status.code(), Some(1), "{what} must count as a change:\n{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(item), "{what}: {item} not named:\n{}", text(&o));
    let o = run(cfg, &["--json", "checklayout"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = j["differences"].as_array().unwrap().iter().find(|d| d["item"] == item && field.is_none_or(|f| d["field"] == f)).cloned();
    let d = d.unwrap_or_else(|| panic!("{what}: no difference {item} {field:?} in {j:#}"));
    assert!(d["why"].as_str().unwrap().starts_with("recovery"), "{what}: no reason: {d}");
    d
}

/// Mount with a shell command; the path is unmounted when the disk is dropped.
fn mount_sh(disk: &mut LoopDisk, at: &Path, cmd: &str) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    if !at.exists() {
        std::fs::create_dir_all(at).unwrap();
    }
    sh(cmd);
    disk.mounts.push(at.to_path_buf());
}

fn umount(disk: &mut LoopDisk, at: &Path) {
    sh(&format!("umount {}", at.display()));
    disk.mounts.retain(|m| m != at);
}

#[test]
fn transient_mounts_never_count_and_real_changes_do() {
    require_root();
    require_tools(&["sfdisk", "partx", "mkfs.ext4", "resize2fs", "e2fsck", "e2label", "mksquashfs", "fuse2fs"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut disk = LoopDisk::new(dir, "transient", 200);
    disk.partition(&format!("label: gpt\nsize=64M, type={LINUX}\nsize=64M, type={LINUX}"));
    let (p1, p2) = (disk.part(1), disk.part(2));
    sh(&format!("mkfs.ext4 -q -L root {p1}"));
    // Smaller than its partition, to be grown below.
    sh(&format!("mkfs.ext4 -q -L srv {p2} 32M"));
    let root = dir.join("root");
    disk.mount(&p1, &root, None);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), "LABEL=root / ext4 defaults 0 1\nLABEL=srv /srv ext4 defaults 0 2\n").unwrap();
    disk.mount(&p2, &root.join("srv"), None);
    let cfg = write_config(dir, &disk.dev, &root, "");
    let name = disk.dev.trim_start_matches("/dev/").to_string();

    // A chroot's /proc: mounted at the capture, gone at the check.
    let proc_dir = root.join("proc");
    mount_sh(&mut disk, &proc_dir, &format!("mount -t proc proc {}", proc_dir.display()));
    let o = run(&cfg, &["savelayout"]);
    assert!(o.status.success(), "{}", text(&o));
    let saved = Layout::load(&dir.join("state/layout.toml")).unwrap();
    let paths: Vec<&str> = saved.mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/", "/srv"]);
    assert!(saved.excluded.iter().all(|e| e.path != "/proc"), "a transient mount is recorded nowhere: {:?}", saved.excluded);
    umount(&mut disk, &proc_dir);
    assert_unchanged(&cfg, "a chroot's /proc going away");

    // Each kind of transient mount, one at a time.
    let (lower, upper, work) = (dir.join("ov/lower"), dir.join("ov/upper"), dir.join("ov/work"));
    for d in [&lower, &upper, &work, &dir.join("sq")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(dir.join("sq/file"), "x").unwrap();
    sh(&format!("mksquashfs {0}/sq {0}/sq.img -quiet -no-progress >/dev/null", dir.display()));
    sh(&format!("mkfs.ext4 -q -F {}/fuse.img 8M", dir.display()));
    let at = |p: &str| root.join(p);
    let kinds: Vec<(&str, PathBuf, String)> = vec![
        ("tmpfs", at("tmp/x"), format!("mount -t tmpfs tmpfs {}", at("tmp/x").display())),
        (
            "overlay",
            at("mnt/ov"),
            format!(
                "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
                lower.display(),
                upper.display(),
                work.display(),
                at("mnt/ov").display()
            ),
        ),
        ("squashfs", at("mnt/sq"), format!("mount -t squashfs -o loop,ro {}/sq.img {}", dir.display(), at("mnt/sq").display())),
        ("fuse", at("mnt/fuse"), format!("fuse2fs -o ro {}/fuse.img {}", dir.display(), at("mnt/fuse").display())),
        ("nsfs", at("mnt/ns"), format!("touch {0} && mount --bind /proc/self/ns/net {0}", at("mnt/ns").display())),
        // The recorded ext4 mounted again: only where it is makes it transient.
        ("a user session's mount under /run/user", at("run/user/1000"), format!("mount {p2} {}", at("run/user/1000").display())),
        ("a container runtime's mount", at("var/lib/docker/overlay2/abc/merged"), format!("mount {p2} {}", at("var/lib/docker/overlay2/abc/merged").display())),
        ("a podman shm", at("var/lib/containers/storage/c1/shm"), format!("mount -t tmpfs shm {}", at("var/lib/containers/storage/c1/shm").display())),
        ("a capture.exclude-mounts pattern", at("var/cache/app/one"), format!("mount {p2} {}", at("var/cache/app/one").display())),
    ];
    for (what, path, cmd) in &kinds {
        if *what == "nsfs" {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            sh(cmd);
            disk.mounts.push(path.clone());
        } else {
            mount_sh(&mut disk, path, cmd);
        }
        assert_unchanged(&cfg, what);
        umount(&mut disk, path);
    }
    // All at once, in the descriptor: none recorded as a mount; the real
    // filesystems among them listed as excluded (the backup leaves them out),
    // the pseudo ones recorded nowhere.
    for (_, path, cmd) in &kinds {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        sh(cmd);
        disk.mounts.push(path.clone());
    }
    let o = run(&cfg, &["savelayout", "-o", "-"]);
    let l = Layout::from_toml(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(l.mounts.len(), 2, "{:?}", l.mounts);
    let mut excluded: Vec<&str> = l.excluded.iter().map(|e| e.path.as_str()).collect();
    excluded.sort();
    assert_eq!(excluded, ["/run/user/1000", "/var/cache/app/one", "/var/lib/docker/overlay2/abc/merged"], "{:?}", l.excluded);
    for (_, path, _) in kinds.iter().rev() {
        umount(&mut disk, path);
    }
    assert_unchanged(&cfg, "nothing");

    // Real changes count, each with the item, the field and why.
    let srv2 = root.join("srv2");
    disk.mount(&p2, &srv2, None);
    let d = assert_changed(&cfg, "a new mount of a recorded filesystem", "mount /srv2", None);
    assert_eq!(d["change"], "added");
    umount(&mut disk, &srv2);
    assert_unchanged(&cfg, "the mount gone again");

    sh(&format!("e2label {p1} newroot"));
    let d = assert_changed(&cfg, "a changed label", &format!("filesystem on {name}p1"), Some("label"));
    assert_eq!((d["old"].as_str(), d["new"].as_str()), (Some("root"), Some("newroot")));
    assert!(run(&cfg, &["savelayout"]).status.success());

    // Grown offline (the host refuses an online resize).
    let srv = root.join("srv");
    umount(&mut disk, &srv);
    sh(&format!("e2fsck -f -p {p2} >/dev/null && resize2fs {p2} >/dev/null 2>&1"));
    disk.mount(&p2, &srv, None);
    let d = assert_changed(&cfg, "a resized filesystem", &format!("filesystem on {name}p2"), Some("size"));
    assert_eq!(d["new"].as_u64(), Some(64 << 20), "{d}");
    assert!(run(&cfg, &["savelayout"]).status.success());

    sh(&format!("echo 'size=16M, type={LINUX}' | sfdisk -q --no-reread --append {}", disk.dev));
    disk.settle();
    let d = assert_changed(&cfg, "a new partition", &format!("partition {name}p3"), None);
    assert_eq!(d["change"], "added");
    assert!(run(&cfg, &["savelayout"]).status.success());

    // GRUB's boot code in the MBR: the disk now boots (BIOS).
    sh(&format!("printf 'GRUB' | dd of={} bs=1 seek=3 conv=notrunc status=none", disk.dev));
    let d = assert_changed(&cfg, "a changed bootloader", "bootloader", Some("boot-disks"));
    assert_eq!(d["new"], serde_json::json!([name]));
}

/// The image's descriptor, read from the PXE initramfs in `out`.
fn image_layout(out: &Path) -> Layout {
    let pxe = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with("-pxe")).unwrap();
    let files = rescue::drill::image::files_from_initrd(&pxe.join("initrd.img"), &[rescue::image::initramfs::IMAGE_LAYOUT]).unwrap();
    Layout::from_toml(&String::from_utf8_lossy(&files[rescue::image::initramfs::IMAGE_LAYOUT])).unwrap()
}

#[test]
fn the_scheduled_refresh_puts_a_layout_change_into_the_image() {
    require_root();
    require_tools(&["sfdisk", "partx", "mkfs.ext4", "cpio", "zstd"]);
    let k = image_common::kernel_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut disk = LoopDisk::new(dir, "refresh", 200);
    disk.partition(&format!("label: gpt\nsize=64M, type={LINUX}\nsize=48M, type={LINUX}\nsize=48M, type={LINUX}"));
    sh(&format!("mkfs.ext4 -q -L root {}", disk.part(1)));
    sh(&format!("mkfs.ext4 -q -L srv {}", disk.part(2)));
    let root = dir.join("root");
    disk.mount(&disk.part(1), &root, None);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), "LABEL=root / ext4 defaults 0 1\nLABEL=srv /srv ext4 defaults 0 2\n").unwrap();
    std::fs::write(root.join("etc/motd"), "hello\n").unwrap();
    disk.mount(&disk.part(2), &root.join("srv"), None);
    let out = dir.join("out");
    let image = format!(
        "[backup]\nurl = \"file://{}/backups\"\n[image]\nkernel = \"{}\"\nmodules-dir = \"{}\"\noutput = [\"pxe\"]\noutput-url = \"file://{}\"\n",
        dir.display(),
        k.0.display(),
        k.1.display(),
        out.display()
    );
    let cfg = write_config(dir, &disk.dev, &root, &image);

    // The weekly mkbackup: layout, backup of / and /srv, image.
    let o = run(&cfg, &["-q", "mkbackup"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let saved = Layout::load(&dir.join("state/layout.toml")).unwrap();
    let held: Vec<&str> = saved.backup.as_ref().unwrap().mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(held, ["/", "/srv"], "the backup record says what it holds");

    // The timer's command, exactly as `schedule` writes it.
    let refresh = rescue::workflow::schedule::refresh_command(&rescue_bin(), &cfg);
    let timer = || Command::new("sh").arg("-c").arg(&refresh).output().unwrap();
    let o = timer();
    assert_eq!(o.status.code(), Some(0), "nothing changed: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("layout unchanged"), "{}", text(&o));

    // A new filesystem at /data.
    sh(&format!("mkfs.ext4 -q -L data {}", disk.part(3)));
    disk.mount(&disk.part(3), &root.join("data"), None);
    let o = timer();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "the image is rebuilt, but /data is in no backup: {said}");
    assert!(said.contains("mount /data added"), "checklayout names the change: {said}");
    assert!(said.contains("/data: a filesystem mounted since the backup"), "mkrescue names the filesystem no backup holds: {said}");
    let in_image = image_layout(&out);
    assert!(in_image.mounts.iter().any(|m| m.path == "/data"), "the image's descriptor has /data: {:?}", in_image.mounts);
    assert!(in_image.backup.is_some(), "the image still knows where the backup is");
    let saved = Layout::load(&dir.join("state/layout.toml")).unwrap();
    assert!(saved.mounts.iter().any(|m| m.path == "/data"), "mkrescue saved what it recorded");

    // The next run finds nothing to do.
    let o = timer();
    assert_eq!(o.status.code(), Some(0), "after the refresh: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("layout unchanged"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("note: /data"), "the gap is still said: {}", text(&o));

    // A build that fails leaves the saved descriptor alone: the next check still sees the change.
    disk.mount(&disk.part(3), &root.join("data2"), None);
    let o = run(&cfg, &["mkrescue", "--kernel", "/nonexistent/vmlinuz"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&cfg, &["checklayout"]);
    assert_eq!(o.status.code(), Some(1), "a failed mkrescue must not make the change look recorded: {}", text(&o));
}
