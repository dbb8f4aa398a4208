//! The Debian package (scripts/build-deb.sh) on a minimal Debian 12
//! (`debootstrap --variant=minbase bookworm`, tests/package/minbase.sh):
//! - `apt-get install --no-install-recommends ./rescue_*.deb` in a fresh copy
//!   pulls in what the package Depends on, and then `rescue mkrescue` builds
//!   a rescue ISO there (Debian's kernel from tests/vm/prepare-kernel.sh),
//!   the man pages, completions and the units of `rescue schedule` are in place;
//! - the same executable in a copy without the dependencies fails and names the
//!   missing program and its package.
//!
//! Root, the package registry and a few minutes (a release build, debootstrap
//! once, the dependencies' download): in the full set.
//!   cargo test --test package -- --ignored --nocapture
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
        let _ = Command::new("umount").arg("-l").arg(self.root.join("proc")).status();
    }
}

#[test]
#[ignore = "root, the package registry, a release build and minutes: cargo test --test package -- --ignored"]
fn the_package_installs_on_minimal_debian_and_mkrescue_works() {
    common::require_root();
    for (t, p) in [("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg"), ("fakeroot", "fakeroot"), ("zstd", "zstd")] {
        image_common::require(t, p);
    }
    let deb = match std::env::var_os("RESCUE_DEB") {
        Some(p) => PathBuf::from(p),
        None => script("scripts/build-deb.sh", &[concat!(env!("CARGO_TARGET_TMPDIR"), "/deb")]),
    };
    assert!(deb.is_file(), "no package at {}", deb.display());
    let tarball = script("tests/package/minbase.sh", &[]);

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

    // With them: apt resolves the package's Depends (Recommends left out: Depends must be enough).
    let c = Chroot::new(&tarball);
    std::fs::copy(&deb, c.root.join("tmp/rescue.deb")).unwrap();
    c.ok("apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/rescue.deb >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }");
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
