//! Building the rescue image on the host with Debian's kernel (from
//! tests/vm/prepare-kernel.sh): what goes in, what must not, the outputs,
//! `rescue format --usb` on a loop device, and `rescue schedule`.
//! Needs root (loop devices) and the packages of scripts/install-deps.sh.

mod image_common;

use std::path::Path;
use std::process::Command;

use image_common::*;

#[test]
fn image_holds_what_recovery_needs_and_no_secrets() {
    let b = build_shared();
    let root = extract_initrd(&b.dir.join("rescue-imgtest-pxe/initrd.img"));
    let r = root.path();
    // The kernel version is the one prepare-kernel.sh fetched today, never a written-in one.
    let kver = kernel_dir().1.file_name().unwrap().to_string_lossy().into_owned();
    let modules_dep = format!("lib/modules/{kver}/modules.dep");
    for p in ["init", "usr/bin/rescue", "etc/rescue/layout.toml", "etc/rescue/rescue.toml", "etc/rescue/modules.load", &modules_dep] {
        assert!(r.join(p).exists(), "{p} missing from the initramfs");
    }
    // Programs for this layout (LVM, XFS, ext4, vfat, swap, UEFI) and udev, by whatever path they resolve to.
    for prog in ["lvm", "mkfs.xfs", "mkfs.ext4", "mkfs.vfat", "mkswap", "efibootmgr", "blkid", "sfdisk", "udevadm", "modprobe", "sh"] {
        assert!(["usr/sbin", "usr/bin", "sbin", "bin"].iter().any(|d| r.join(d).join(prog).exists()), "{prog} missing from the initramfs");
    }
    assert!(r.join("lib64/ld-linux-x86-64.so.2").exists(), "the dynamic loader is missing");
    // Modules of the layout and of dissimilar hardware, with dependencies.
    let modules = std::fs::read_to_string(r.join("etc/rescue/modules.load")).unwrap();
    for m in ["xfs", "ext4", "dm_mod", "virtio_blk", "nvme", "ahci", "usb_storage", "e1000e"] {
        assert!(modules.lines().any(|l| l == m), "{m} not in modules.load: {modules}");
    }
    assert!(find_file(r, "libcrc32c.ko"), "xfs's dependency libcrc32c.ko missing");
    // No secrets: no shadow, no host keys, no file that is a private key.
    assert!(!r.join("etc/shadow").exists() && !r.join("etc/gshadow").exists());
    for f in walk(r) {
        let head = std::fs::read(&f).map(|d| d[..d.len().min(200)].to_vec()).unwrap_or_default();
        let rel = Path::new("/").join(f.strip_prefix(r).unwrap());
        assert!(rescue::image::initramfs::looks_secret(&rel, &head).is_none(), "{} looks like a secret", rel.display());
    }
    // The config went in without the password of the backup URL.
    let cfg = std::fs::read_to_string(r.join("etc/rescue/rescue.toml")).unwrap();
    assert!(cfg.contains("nfs://backup@nas/export") && !cfg.contains("hunter2"), "{cfg}");
    // Outputs are private, and the manifest says what went in.
    for f in ["rescue-imgtest.iso", "rescue-imgtest.raw", "rescue-imgtest-pxe/initrd.img", "rescue-imgtest.manifest.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b.dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    let out = rescue(&["--config", b.config.to_str().unwrap(), "mkrescue", "--manifest", "--layout", LAYOUT_FIXTURE, "--output-dir", b.dir.to_str().unwrap()]);
    assert!(out.contains("secrets in the image: none"), "{out}");
    assert!(out.contains("backup.url (password in the URL)"), "{out}");
    assert!(out.contains("/etc/rescue/layout.toml"), "{out}");
}

#[test]
fn a_private_key_in_extra_files_is_refused_unless_allowed() {
    let k = kernel_dir();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_test");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(&cfg, format!("[image]\nextra-files = [\"{}\"]\n", key.display())).unwrap();
    let out = mkrescue_cmd(&cfg, &k, &dir.path().join("out"), "pxe").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("a private key") && err.contains("include-secrets"), "{err}");
    std::fs::write(&cfg, format!("[image]\ninclude-secrets = true\nextra-files = [\"{}\"]\n", key.display())).unwrap();
    let out = mkrescue_cmd(&cfg, &k, &dir.path().join("out"), "pxe").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SECRETS IN THE IMAGE") && stdout.contains("id_test"), "{stdout}");
}

#[test]
fn missing_descriptor_and_kernel_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(&cfg, format!("state-dir = \"{}\"\n", dir.path().display())).unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "mkrescue", "--layout", "/nonexistent/layout.toml", "--output-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rescue savelayout"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "mkrescue", "--layout", LAYOUT_FIXTURE, "--kernel", "/nonexistent/vmlinuz", "--output-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kernel FILE --modules-dir DIR"));
}

#[test]
fn format_usb_refuses_a_fixed_disk_then_makes_rescue_media() {
    let k = kernel_dir();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("usb.img");
    std::fs::File::create(&img).unwrap().set_len(400 << 20).unwrap();
    let lo = Loop::attach(&img);
    let dev = lo.dev.to_str().unwrap().to_string();
    // A loop device is not removable: refused without --force.
    let out = Command::new(BIN).args(["--config", "/dev/null", "format", "--usb", &dev]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a removable"), "{}", String::from_utf8_lossy(&out.stderr));
    rescue(&["--config", "/dev/null", "format", "--usb", &dev, "--force", "--boot-size-mib", "128"]);
    let probe = |off: u64| {
        String::from_utf8_lossy(&Command::new("blkid").args(["-p", "-O", &off.to_string(), "-o", "export", &dev]).output().unwrap().stdout).to_string()
    };
    assert!(probe(1 << 20).contains("LABEL=RESCUEBOOT"), "{}", probe(1 << 20));
    assert!(probe((1 << 20) + (128 << 20)).contains("LABEL=RESCUE\n"), "{}", probe((1 << 20) + (128 << 20)));
    // Write the rescue system to it.
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(&cfg, format!("[image]\ntimeout = 1\nkernel-cmdline = \"{TEST_CMDLINE}\"\n")).unwrap();
    let out = mkrescue_cmd(&cfg, &k, &dir.path().join("out"), "usb").arg("--usb").arg(&dev).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // mtools cannot open a loop device at an offset (no geometry): read the backing file.
    let fat = format!("{}@@1048576", img.display());
    let listing = Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args(["-i", &fat, "-b", "::/boot"]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("vmlinuz") && listing.contains("initrd.img"), "{listing}");
    let sys = Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args(["-a", "-i", &fat, "::/boot/syslinux"]).output().unwrap();
    assert!(String::from_utf8_lossy(&sys.stdout).to_lowercase().contains("ldlinux"), "{}", String::from_utf8_lossy(&sys.stdout));
    // The backup partition survived the rewrite of the boot partition.
    assert!(probe((1 << 20) + (128 << 20)).contains("LABEL=RESCUE\n"));
    // And the disk boots to the rescue system (BIOS).
    drop(lo);
    let c = boot(Firmware::Bios, &["-drive", &format!("file={},format=raw,if=ide", img.display())], 400);
    assert!(c.contains("SYSLINUX"), "syslinux did not start from the USB disk");
    assert!(c.contains("RESCUE-BANNER"), "the USB disk did not boot to the banner");
}

#[test]
fn schedule_writes_timer_or_cron_under_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    rescue(&["--config", "/dev/null", "schedule", "--install", "--root", root, "--method", "systemd", "--mkbackup-calendar", "Sun 02:00"]);
    let svc = std::fs::read_to_string(dir.path().join("etc/systemd/system/rescue-mkrescue.service")).unwrap();
    assert!(svc.contains("checklayout ||") && svc.contains("mkrescue"), "{svc}");
    let timer = std::fs::read_to_string(dir.path().join("etc/systemd/system/rescue-mkrescue.timer")).unwrap();
    assert!(timer.contains("OnCalendar=daily") && timer.contains("WantedBy=timers.target"), "{timer}");
    assert!(dir.path().join("etc/systemd/system/rescue-mkbackup.timer").exists());
    rescue(&["--config", "/dev/null", "schedule", "--install", "--root", root, "--method", "cron"]);
    let cron = std::fs::read_to_string(dir.path().join("etc/cron.d/rescue")).unwrap();
    assert!(cron.contains(" root ") && cron.contains("checklayout ||"), "{cron}");
    // Without --install nothing is written.
    let other = tempfile::tempdir().unwrap();
    rescue(&["--config", "/dev/null", "schedule", "--root", other.path().to_str().unwrap(), "--method", "cron"]);
    assert!(!other.path().join("etc").exists());
}

#[test]
fn an_age_identity_named_in_the_config_never_goes_into_the_image() {
    require("age-keygen", "age");
    let k = kernel_dir();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup-key.txt");
    let made = Command::new("age-keygen").arg("-o").arg(&key).output().unwrap();
    assert!(made.status.success());
    let text = std::fs::read_to_string(&key).unwrap();
    let secret = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap().to_string();
    let public = String::from_utf8(Command::new("age-keygen").arg("-y").arg(&key).output().unwrap().stdout).unwrap();
    // The recovery reads the identity from this file: the image must hold the path, never the key.
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(
        &cfg,
        format!(
            "[backup]\nurl = \"file:///srv/backups\"\n[backup.encrypt]\nrecipients = [\"{}\"]\n[recover]\nage-identity = \"{}\"\n",
            public.trim(),
            key.display()
        ),
    )
    .unwrap();
    let out = mkrescue_cmd(&cfg, &k, &dir.path().join("out"), "pxe").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = extract_initrd(&dir.path().join("out/rescue-imgtest-pxe/initrd.img"));
    let body = secret.trim_start_matches("AGE-SECRET-KEY-1").as_bytes().to_vec();
    let files = walk(root.path());
    assert!(files.len() > 100, "the image tree was not unpacked: {} files", files.len());
    for f in files {
        let data = std::fs::read(&f).unwrap_or_default();
        assert!(!data.windows(body.len()).any(|w| w == body.as_slice()), "{} holds the age identity", f.display());
    }
    let image_cfg = std::fs::read_to_string(root.path().join("etc/rescue/rescue.toml")).unwrap();
    assert!(image_cfg.contains("age1"), "the image's config keeps the recipient: {image_cfg}");
    // Nor the outputs and the manifest as files.
    for f in walk(&dir.path().join("out")) {
        let data = std::fs::read(&f).unwrap_or_default();
        assert!(!data.windows(body.len()).any(|w| w == body.as_slice()), "{} holds the age identity", f.display());
    }
}
