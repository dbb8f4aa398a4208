//! The Debian package (scripts/build-deb.sh) on a minimal Debian 12
//! (`debootstrap --variant=minbase bookworm`, tests/package/minbase.sh):
//! - `apt-get install --no-install-recommends ./rescue_*.deb` in a fresh copy
//!   pulls in what the package Depends on, and then `rescue mkrescue` builds
//!   a rescue ISO there (Debian's kernel from tests/vm/prepare-kernel.sh),
//!   the man pages, completions and the units of `rescue schedule` are in place;
//! - the same executable in a copy without the dependencies fails and names the
//!   missing program and its package;
//! - the installed tree, made into a disk image and booted under qemu (its
//!   /sbin/init is tests/package/init: a minbase tree has no init system),
//!   runs `rescue -v mkbackup`, which builds the rescue ISO.
//!
//! Root, the package registry and a few minutes (a release build, debootstrap
//! once, the dependencies' download): in the full set.
//!   cargo test --test package -- --ignored --nocapture
//! (the VM test alone: `cargo test --test package mkbackup -- --ignored`).
//! `RESCUE_DEB=path/rescue_VERSION_amd64.deb` tests a package already built.
#![allow(clippy::unwrap_used)]

mod common;
mod image_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    eprintln!("$ {c:?} -> {:?}", out.status.code());
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn script(rel: &str, args: &[&str]) -> PathBuf {
    let out = run(Command::new("bash").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).args(args));
    assert!(out.status.success(), "{rel} failed:\n{}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").trim())
}

/// A fresh copy of the minimal tree, with /proc mounted while it lives.
struct Chroot {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Chroot {
    fn new(tarball: &Path) -> Chroot {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let out = run(Command::new("tar").arg("-I").arg("zstd").arg("-xpf").arg(tarball).arg("-C").arg(&root).arg("--numeric-owner"));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        let out = run(Command::new("mount").args(["-t", "proc", "proc"]).arg(root.join("proc")));
        assert!(out.status.success(), "{}", text(&out));
        Chroot { _dir: dir, root }
    }

    fn sh(&self, cmd: &str) -> Output {
        run(Command::new("chroot")
            .arg(&self.root)
            .args(["/bin/sh", "-c", cmd])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    }

    fn ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(out.status.success(), "in the chroot: {cmd}\n{}", text(&out));
        text(&out)
    }

    /// The kernel and modules for mkrescue, copied in; the command that builds an ISO with them.
    fn mkrescue_command(&self) -> String {
        let (kernel, modules) = image_common::kernel_dir();
        let kdir = self.root.join("tmp/kernel");
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::copy(&kernel, kdir.join("vmlinuz")).unwrap();
        let out = run(Command::new("cp").arg("-a").arg(&modules).arg(kdir.join("modules")));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/bios-gpt-ext4.toml"), self.root.join("tmp/layout.toml")).unwrap();
        "rescue -q mkrescue --layout /tmp/layout.toml --kernel /tmp/kernel/vmlinuz --modules-dir /tmp/kernel/modules --output iso --output-dir /tmp/out".into()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        self.unmount_proc();
    }
}

impl Chroot {
    fn unmount_proc(&self) {
        // Quiet: the VM test unmounts it before making the disk image, then drops.
        let _ = Command::new("umount").arg("-l").arg(self.root.join("proc")).stderr(std::process::Stdio::null()).status();
    }

    /// `apt-get install` of the package: apt resolves its Depends (Recommends
    /// left out: Depends must be enough).
    fn install(&self, deb: &Path) {
        std::fs::copy(deb, self.root.join("tmp/rescue.deb")).unwrap();
        self.ok(
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/rescue.deb >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }",
        );
    }
}

/// The package under test (built unless `RESCUE_DEB` names one) and the cached minimal tree.
fn package_and_minbase() -> (PathBuf, PathBuf) {
    common::require_root();
    for (t, p) in [("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg"), ("fakeroot", "fakeroot"), ("zstd", "zstd")] {
        image_common::require(t, p);
    }
    let deb = match std::env::var_os("RESCUE_DEB") {
        Some(p) => PathBuf::from(p),
        None => script("scripts/build-deb.sh", &[concat!(env!("CARGO_TARGET_TMPDIR"), "/deb")]),
    };
    assert!(deb.is_file(), "no package at {}", deb.display());
    (deb, script("tests/package/minbase.sh", &[]))
}

#[test]
#[ignore = "root, the package registry, a release build and minutes: cargo test --test package -- --ignored"]
fn the_package_installs_on_minimal_debian_and_mkrescue_works() {
    let (deb, tarball) = package_and_minbase();

    // lintian: no error and no warning (docs/package.md explains the rest).
    image_common::require("lintian", "lintian");
    let out = run(Command::new("lintian").args(["--fail-on", "error,warning"]).arg(&deb));
    assert!(out.status.success(), "lintian reports errors or warnings on {}:\n{}", deb.display(), text(&out));

    // Without the dependencies: the executable alone names what is missing.
    let bare = Chroot::new(&tarball);
    // The executable only: `dpkg-deb -x` of the whole package would replace the
    // /lib symlink of the merged-/usr tree with the package's lib/systemd directory.
    let out = run(Command::new("sh").arg("-c").arg(format!("dpkg-deb --fsys-tarfile {} | tar -x -C {} ./usr/sbin/rescue", deb.display(), bare.root.display())));
    assert!(out.status.success(), "{}", text(&out));
    let cmd = bare.mkrescue_command();
    let out = bare.sh(&cmd);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("is not installed") && t.contains("apt-get install"), "mkrescue without the dependencies:\n{t}");
    eprintln!("without the dependencies: {}", t.lines().find(|l| l.contains("not installed")).unwrap_or(""));
    drop(bare);

    // With them.
    let c = Chroot::new(&tarball);
    c.install(&deb);
    let v = c.ok("rescue --version");
    assert!(v.starts_with("rescue "), "{v}");
    assert!(c.ok("rescue mkrescue --help").contains("--output"));
    for f in [
        "usr/sbin/rescue",
        "usr/share/man/man8/rescue.8.gz",
        "usr/share/man/man8/rescue-mkrescue.8.gz",
        "usr/share/bash-completion/completions/rescue",
        "usr/share/zsh/vendor-completions/_rescue",
        "lib/systemd/system/rescue-mkrescue.timer",
        "lib/systemd/system/rescue-mkbackup.service",
        "usr/share/doc/rescue/copyright",
    ] {
        assert!(c.root.join(f).exists(), "the package did not install /{f}");
    }
    let cmd = c.mkrescue_command();
    let out = c.sh(&format!("{cmd} && ls -l /tmp/out"));
    assert!(out.status.success(), "mkrescue with the package's dependencies:\n{}", text(&out));
    assert!(c.root.join("tmp/out/rescue-web1.iso").is_file(), "{}", text(&out));
    eprintln!("installed {} and built {}", v.trim(), c.root.join("tmp/out/rescue-web1.iso").display());
}

#[test]
#[ignore = "root, the package registry, qemu and tens of minutes: cargo test --test package mkbackup -- --ignored"]
fn mkbackup_runs_in_a_vm_booted_from_the_installed_tree() {
    for (t, p) in [("qemu-system-x86_64", "qemu-system-x86"), ("mkfs.ext4", "e2fsprogs"), ("cpio", "cpio"), ("modprobe", "kmod")] {
        image_common::require(t, p);
    }
    let (deb, tarball) = package_and_minbase();
    let c = Chroot::new(&tarball);
    c.install(&deb);

    // Debian's kernel where a Debian system has it, so mkrescue's defaults
    // (/boot/vmlinuz-$(uname -r), /lib/modules/$(uname -r)) find it.
    let (kernel, modules) = image_common::kernel_dir();
    let kver = modules.file_name().unwrap().to_string_lossy().to_string();
    std::fs::copy(&kernel, c.root.join(format!("boot/vmlinuz-{kver}"))).unwrap();
    std::fs::create_dir_all(c.root.join("usr/lib/modules")).unwrap();
    let out = run(Command::new("cp").arg("-a").arg(&modules).arg(c.root.join("usr/lib/modules").join(&kver)));
    assert!(out.status.success(), "{}", text(&out));
    let init = c.root.join("sbin/init");
    assert!(!init.exists(), "a minbase tree has no init system, yet {} exists", init.display());
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/package/init"), &init).unwrap();
    // The backup goes into the ISO; the ISO to the job share. Debian's 400 MB of
    // kernel modules are left out of the backup to keep the run short under TCG.
    std::fs::create_dir_all(c.root.join("etc/rescue")).unwrap();
    std::fs::write(
        c.root.join("etc/rescue/rescue.toml"),
        "[backup]\nurl = \"iso:///backup\"\nexclude = [\"/usr/lib/modules/*\"]\n\n[image]\noutput-url = \"file:///job/out\"\n",
    )
    .unwrap();

    // The tree as a whole-disk ext4 root (/dev/vda), without the chroot's /proc.
    c.unmount_proc();
    let boot = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::copy(&kernel, boot.path().join("vmlinuz")).unwrap();
    script("tests/vm/fast-initrd.sh", &[c.root.to_str().unwrap(), &kver, boot.path().join("initrd-fast.img").to_str().unwrap()]);
    let out = run(Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&c.root).arg(boot.path().join("root.img")).arg("6G"));
    assert!(out.status.success(), "{}", text(&out));

    let job = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(job.path().join("run.sh"), "rescue --version\nrescue -v mkbackup\n").unwrap();
    let out = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run-guest.sh"))
        .args(["--no-rescue", "--timeout", "3600", "--image-dir"])
        .arg(boot.path())
        .arg(job.path()));
    let serial = std::fs::read_to_string(job.path().join("out/serial.log")).unwrap_or_default();
    let log = std::fs::read_to_string(job.path().join("out/run.log")).unwrap_or_default();
    assert!(serial.contains("RESCUE-JOB: exit-status 0"), "no exit status 0 on the console; run-guest: {}\nrun.log:\n{log}\nserial:\n{serial}", text(&out));
    assert!(out.status.success(), "run-guest: {}\nrun.log:\n{log}", text(&out));
    let isos: Vec<_> = std::fs::read_dir(job.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("rescue-") && n.ends_with(".iso"))
        .collect();
    assert_eq!(isos, ["rescue-pkgvm.iso"], "mkbackup in the booted tree left no ISO in the job share\nrun.log:\n{log}");
    eprintln!(
        "mkbackup in the booted minimal tree built {} ({} bytes) in a run of {} s",
        isos[0],
        std::fs::metadata(job.path().join("out").join(&isos[0])).unwrap().len(),
        std::fs::read_to_string(job.path().join("out/total-seconds")).unwrap_or_default().trim()
    );
}
