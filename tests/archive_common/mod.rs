//! Shared helpers of the archive tests: a tree holding every kind of entry,
//! an entry-by-entry comparison, and running the `rescue` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn rescue() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    // Never read the host's config; logs into a throwaway place.
    let cfg = std::env::temp_dir().join("rescue-archive-test-empty.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, "log-dir = \"/tmp/rescue-archive-test-logs\"\n").unwrap();
    }
    c.arg("--config").arg(cfg);
    c
}

pub fn run(mut c: Command) -> Output {
    let out = c.output().unwrap();
    eprintln!("$ {:?}\nexit {:?}\nstdout: {}\nstderr: {}", c, out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// Fail loudly (never skip) when a tool the test needs is missing.
pub fn require(tools: &[(&str, &str)]) {
    for (prog, pkg) in tools {
        let found = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file())).unwrap_or(false)
            || Path::new("/usr/sbin").join(prog).is_file()
            || Path::new("/sbin").join(prog).is_file();
        assert!(found, "this test needs `{prog}`: apt-get install {pkg} (scripts/install-deps.sh)");
    }
    assert!(nix::unistd::geteuid().is_root(), "this test must run as root (device nodes, ownership, security.* xattrs)");
}

pub fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "command failed: {cmd}");
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let ts = nix::sys::time::TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(None, p, &ts, &ts, nix::sys::stat::UtimensatFlags::NoFollowSymlink).unwrap();
}

/// A `security.capability` value (VFS_CAP_REVISION_2, effective, cap_net_raw).
pub fn capability_value() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// Build a tree under `root` holding every kind of entry the archive must
/// preserve. Returns the relative names of sockets (which are skipped).
pub fn build_tree(root: &Path) {
    use std::fs;
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    };
    // Regular files: empty, small, binary, and larger than the read-ahead threshold.
    w("etc/empty", b"");
    w("etc/hostname", b"testhost\n");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    w("var/lib/big.bin", &big);
    for i in 0..200 {
        w(&format!("usr/share/doc/pkg{i}/copyright"), format!("file {i}\n").repeat(i + 1).as_bytes());
    }
    // setuid, setgid, sticky.
    let su = w("usr/bin/su", b"\x7fELF fake");
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
    let sg = w("usr/bin/wall", b"\x7fELF fake2");
    fs::set_permissions(&sg, fs::Permissions::from_mode(0o2755)).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(root.join("srv/shared")).unwrap();
    fs::set_permissions(root.join("srv/shared"), fs::Permissions::from_mode(0o2770)).unwrap();
    // Odd owners: unknown ids and one too large for a ustar field.
    let o = w("home/odd/owned", b"x");
    std::os::unix::fs::chown(&o, Some(4242), Some(4343)).unwrap();
    let o2 = w("home/odd/bigid", b"y");
    std::os::unix::fs::chown(&o2, Some(3_000_000), Some(3_000_001)).unwrap();
    // Symlinks: relative, absolute, dangling; one owned by another user.
    std::os::unix::fs::symlink("hostname", root.join("etc/hostname.link")).unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    std::os::unix::fs::symlink("../nowhere/at/all", root.join("etc/dangling")).unwrap();
    std::os::unix::fs::lchown(root.join("etc/dangling"), Some(1000), Some(1000)).unwrap();
    // Hard links, one to the big file.
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.hard")).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("home/hostname.hard2")).unwrap();
    fs::hard_link(root.join("var/lib/big.bin"), root.join("var/lib/big.hard")).unwrap();
    // Devices and a FIFO.
    fs::create_dir_all(root.join("dev")).unwrap();
    sh(&format!(
        "mknod {} c 1 3 && mknod {} b 7 200 && mkfifo {}",
        root.join("dev/null").display(),
        root.join("dev/loop200").display(),
        root.join("dev/initctl").display()
    ));
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    // A socket: skipped with a note.
    let _sock = std::os::unix::net::UnixListener::bind(root.join("tmp/sock")).unwrap();
    // xattrs: user.*, security.capability, security.selinux, a binary value.
    let ping = w("usr/bin/ping", b"\x7fELF ping");
    xattr::set(&ping, "security.capability", &capability_value()).unwrap();
    xattr::set(&ping, "security.selinux", b"system_u:object_r:ping_exec_t:s0\0").unwrap();
    xattr::set(root.join("etc/hostname"), "user.comment", b"the name").unwrap();
    xattr::set(root.join("var/lib/big.bin"), "user.bin", &[0u8, 1, 2, 255, b'=', b'\n']).unwrap();
    xattr::set(root.join("srv/shared"), "user.dir", b"on a directory").unwrap();
    // POSIX ACLs: access on a file and a directory, default on a directory.
    sh(&format!(
        "setfacl -m u:1000:r--,g:50:rw- {f} && setfacl -m u:1001:rwx {d} && setfacl -d -m g:50:rwx,u:1002:r-x {d}",
        f = root.join("etc/hostname").display(),
        d = root.join("srv/shared").display()
    ));
    // Sparse files: holes inside and at the end.
    let sp = root.join("var/lib/sparse.img");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(&sp).unwrap();
        f.seek(SeekFrom::Start(10 << 20)).unwrap();
        f.write_all(b"data in the middle").unwrap();
        f.seek(SeekFrom::Start(30 << 20)).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        f.set_len(64 << 20).unwrap();
    }
    // Names: not UTF-8, with a newline and spaces, and a path longer than 255 bytes.
    let odd = root.join(OsStr::from_bytes(b"home/caf\xe9 \xff"));
    fs::write(&odd, b"latin-1 name").unwrap();
    fs::write(root.join("home/line\nbreak and spaces"), b"odd").unwrap();
    let mut long = root.join("deep");
    for i in 0..4 {
        long = long.join(format!("{i}{}", "d".repeat(90)));
    }
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join(format!("{}.txt", "f".repeat(200))), b"long path").unwrap();
    let long_nonutf8 = long.join(OsStr::from_bytes(&[b'n', 0xe9, b'x'].repeat(40)));
    fs::write(&long_nonutf8, b"long and latin-1").unwrap();
    std::os::unix::fs::symlink(format!("{}/{}", "../".repeat(3), "x".repeat(150)), long.join("longlink")).unwrap();
    // mtimes with nanoseconds on everything (directories last, deepest first).
    let mut all = Vec::new();
    collect(root, root, &mut all);
    all.sort();
    for (i, rel) in all.iter().enumerate().rev() {
        let p = root.join(rel);
        if p.symlink_metadata().unwrap().file_type().is_socket_like() {
            continue;
        }
        set_mtime(&p, 1_600_000_000 + i as i64 * 7, 123_456_789 + i as i64);
    }
    set_mtime(root, 1_500_000_000, 987_654_321);
    std::mem::forget(_sock);
}

trait SocketLike {
    fn is_socket_like(&self) -> bool;
}
impl SocketLike for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_socket()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().to_path_buf());
        if e.file_type().unwrap().is_dir() {
            collect(root, &p, out);
        }
    }
}

/// Everything we compare about one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    link: Option<Vec<u8>>,
    content: Option<u64>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Index of the first path of its hard link group.
    link_group: Option<PathBuf>,
    sparse: bool,
}

pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Seen> {
    use std::os::unix::fs::FileTypeExt;
    let mut all = vec![PathBuf::new()];
    collect(root, root, &mut all);
    all.sort();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for rel in all {
        if skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let p = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let m = p.symlink_metadata().unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "file"
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                if let Ok(Some(v)) = xattr::get(&p, &n) {
                    xattrs.insert(n.as_bytes().to_vec(), v);
                }
            }
        }
        let link_group = if !ft.is_dir() && m.nlink() > 1 { Some(inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone()) } else { None };
        let content = ft.is_file().then(|| {
            let d = std::fs::read(&p).unwrap();
            xxhash_rust::xxh3::xxh3_64(&d)
        });
        out.insert(
            rel.clone(),
            Seen {
                kind: kind.into(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_dir() { 0 } else { m.size() },
                mtime: (m.mtime(), m.mtime_nsec()),
                rdev: m.rdev(),
                link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
                content,
                xattrs,
                link_group,
                sparse: ft.is_file() && m.blocks() * 512 < m.size() / 2,
            },
        );
    }
    out
}

/// Compare two trees entry by entry; panics with the first differences.
pub fn assert_same_tree(a: &Path, b: &Path, skip: &[&str]) {
    let sa = snapshot(a, skip);
    let sb = snapshot(b, skip);
    let mut diffs = Vec::new();
    for (k, va) in &sa {
        match sb.get(k) {
            None => diffs.push(format!("missing in {}: {}", b.display(), k.display())),
            Some(vb) if vb != va => diffs.push(format!("{}:\n  source   {va:?}\n  restored {vb:?}", k.display())),
            _ => {}
        }
    }
    for k in sb.keys() {
        if !sa.contains_key(k) {
            diffs.push(format!("extra in {}: {}", b.display(), k.display()));
        }
    }
    assert!(diffs.is_empty(), "{} differences between {} and {}:\n{}", diffs.len(), a.display(), b.display(), diffs.join("\n"));
}

/// A loop-mounted ext4 filesystem of `mib` MiB, unmounted and detached on drop.
pub struct LoopFs {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    dev: String,
}

impl LoopFs {
    /// An ext4 of `mib` MiB, mounted.
    pub fn new(mib: u64) -> LoopFs {
        require(&[("mkfs.ext4", "e2fsprogs")]);
        LoopFs::make(mib, "mkfs.ext4 -q -F -m 0")
    }

    /// A btrfs of `mib` MiB (at least 128), mounted.
    pub fn btrfs(mib: u64) -> LoopFs {
        require(&[("mkfs.btrfs", "btrfs-progs"), ("btrfs", "btrfs-progs")]);
        LoopFs::make(mib, "mkfs.btrfs -q -f")
    }

    pub fn dev(&self) -> &str {
        &self.dev
    }

    fn make(mib: u64, mkfs: &str) -> LoopFs {
        require(&[("losetup", "mount")]);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&img).output().unwrap();
        assert!(out.status.success(), "losetup failed: {}", String::from_utf8_lossy(&out.stderr));
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let fs = LoopFs { dir, mnt: mnt.clone(), dev: dev.clone() };
        sh(&format!("{mkfs} {dev} && mount {dev} {}", mnt.display()));
        fs
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // "target is busy" for a moment after a test's last process ended
        // (seen under load): retry, then detach lazily rather than leak it.
        let unmounted = (0..20).any(|i| {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Command::new("umount").arg(&self.mnt).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
        });
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

// ---------------------------------------------------------------- hand-made archives

/// One ustar header block with any name, type and size (no validation:
/// hostile archives are made with it).
pub fn raw_header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let octal = |field: &mut [u8], v: u64| {
        let w = field.len() - 1;
        field[..w].copy_from_slice(format!("{v:0w$o}").as_bytes());
    };
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// One pax record, `LEN KEY=VALUE\n` (LEN counts itself).
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Append a member (header, data, padding) to a raw archive.
pub fn raw_member(out: &mut Vec<u8>, header: [u8; 512], data: &[u8]) {
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Append a pax extended header holding `records`.
pub fn raw_pax(out: &mut Vec<u8>, records: &[u8]) {
    raw_member(out, raw_header(b"PaxHeaders/x", b'x', records.len() as u64, 0o644, b""), records);
}

/// Append a GNU sparse 1.0 member with a hand-written map text (as given,
/// padded to a block) followed by `data`.
pub fn raw_sparse(out: &mut Vec<u8>, name: &[u8], realsize: Option<u64>, map_text: &[u8], data: &[u8]) {
    let mut recs = pax_record(b"GNU.sparse.major", b"1");
    recs.extend(pax_record(b"GNU.sparse.minor", b"0"));
    recs.extend(pax_record(b"GNU.sparse.name", name));
    if let Some(r) = realsize {
        recs.extend(pax_record(b"GNU.sparse.realsize", r.to_string().as_bytes()));
    }
    raw_pax(out, &recs);
    let mut body = map_text.to_vec();
    body.resize(body.len().div_ceil(512) * 512, 0);
    body.extend_from_slice(data);
    raw_member(out, raw_header(b"./GNUSparseFile.0/x", b'0', body.len() as u64, 0o644, b""), &body);
}

/// The end-of-archive marker.
pub fn raw_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// Compress a raw tar stream as zstd (level 1).
pub fn zstd_bytes(tar: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(tar, 1).unwrap()
}

/// Run a command, killing it after `secs`: `None` when it did not finish.
pub fn run_within(mut c: Command, secs: u64) -> Option<(Output, std::time::Duration)> {
    let start = std::time::Instant::now();
    let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    while start.elapsed().as_secs() < secs {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            eprintln!("$ {:?}\nexit {:?} after {:?}\nstderr: {}", c, out.status.code(), start.elapsed(), String::from_utf8_lossy(&out.stderr));
            return Some((out, start.elapsed()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("$ {c:?} did not finish within {secs} s");
    None
}
