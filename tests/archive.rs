//! Archive round trips (ours and GNU tar's extraction), verify, and the
//! trouble cases: truncation, flipped bytes, missing members, path
//! traversal, files growing during backup, a full destination, an
//! unreachable NFS server; mkbackuponly/restoreonly end to end.
//! Run as root: `cargo test --test archive`.
#![allow(clippy::unwrap_used)]

mod archive_common;

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use archive_common::*;
use rescue::archive::format::{self, EntryMeta, Kind};

const TOOLS: &[(&str, &str)] = &[("tar", "tar"), ("zstd", "zstd"), ("setfacl", "acl"), ("mknod", "coreutils"), ("mkfifo", "coreutils")];

/// The socket is skipped on purpose; everything else must come back.
const SKIP: &[&str] = &["tmp/sock", format::MANIFEST_NAME];

fn create(src: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = rescue();
    c.args(["archive", "create", "-C"]).arg(src).arg(".").arg("-o").arg(out).args(extra);
    run(c)
}

fn gnu_tar_extract(archive: &Path, target: &Path, flag: &str) {
    std::fs::create_dir_all(target).unwrap();
    let out = Command::new("tar")
        .args([flag, "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-xpf"])
        .arg(archive)
        .arg("-C")
        .arg(target)
        .output()
        .unwrap();
    assert!(out.status.success(), "GNU tar could not extract {}: {}", archive.display(), String::from_utf8_lossy(&out.stderr));
    // The manifest member is a plain file for GNU tar (left out of comparisons).
    let m = target.join(format::MANIFEST_NAME);
    assert!(m.is_file(), "the manifest should be the archive's last member");
}

fn round_trip(compress: &str, ext: &str, tar_flag: &str) {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let archive = t.path().join(format!("a.{ext}"));
    let out = create(&src, &archive, &["--compress", compress]);
    assert_eq!(out.status.code(), Some(0), "create should succeed without warnings");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("archived"), "{err}");

    // Our extraction.
    let ours = t.path().join("ours");
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&ours);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0));
    assert_same_tree(&src, &ours, SKIP);
    assert!(!ours.join("tmp/sock").exists(), "sockets are skipped");

    // GNU tar, no rescue involved.
    let gnu = t.path().join("gnu");
    gnu_tar_extract(&archive, &gnu, tar_flag);
    assert_same_tree(&src, &gnu, SKIP);

    // The `tar` crate, a reader written apart from ours and GNU tar's.
    second_reader_agrees(&archive, &src);

    // verify and list.
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&archive);
    assert_eq!(run(c).status.code(), Some(0));
    let mut c = rescue();
    c.args(["archive", "list"]).arg(&archive);
    let out = run(c);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("home/caf%E9%20%FF"), "non-UTF-8 names are listed escaped");
    assert!(listing.contains("var/lib/big.hard link to var/lib/big.bin") || listing.contains("var/lib/big.bin link to var/lib/big.hard"));
}

/// Read an archive with the `tar` crate (an independent implementation of
/// ustar, pax and GNU long names; GNU sparse 1.0 is decoded here from its
/// map) and check every member against the source tree: kind, mode, owner,
/// mtime, link target, xattrs and the data of every file.
fn second_reader_agrees(archive: &Path, src: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let file = std::fs::File::open(archive).unwrap();
    let name = archive.to_string_lossy();
    let stream: Box<dyn Read> = if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut tar = tar::Archive::new(stream);
    for entry in tar.entries().unwrap() {
        let mut e = entry.unwrap();
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // The tar crate splits pax records at newlines, so it cannot read a
        // record whose value holds one (a binary xattr; the length prefix
        // says where a record ends): the records from there on are left out.
        let mut newline_in_value = false;
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let Ok(x) = x else {
                    newline_in_value = true;
                    break;
                };
                pax.push((x.key_bytes().to_vec(), x.value_bytes().to_vec()));
            }
        }
        let pax_value = |k: &[u8]| pax.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let mut path = pax_value(b"GNU.sparse.name").unwrap_or_else(|| e.path_bytes().to_vec());
        while path.ends_with(b"/") && path.len() > 1 {
            path.pop();
        }
        let rel = PathBuf::from(std::ffi::OsStr::from_bytes(path.strip_prefix(b"./").unwrap_or(&path)));
        if rel == Path::new(format::MANIFEST_NAME) || rel == Path::new(".") {
            continue;
        }
        let on_disk = src.join(&rel);
        let md = std::fs::symlink_metadata(&on_disk).unwrap_or_else(|e| panic!("{}: in the archive, not in the source: {e}", rel.display()));
        if newline_in_value {
            let values: Vec<Vec<u8>> = xattr::list(&on_disk).unwrap().filter_map(|k| xattr::get(&on_disk, k).unwrap()).collect();
            assert!(values.iter().any(|v| v.contains(&b'\n')), "{}: the tar crate cannot read a pax record, and no xattr value has a newline", rel.display());
        }
        let h = e.header().clone();
        let what = format!("{} (tar crate)", rel.display());
        assert_eq!(h.mode().unwrap(), md.permissions().mode() & 0o7777, "{what}: mode");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (md.uid() as u64, md.gid() as u64), "{what}: owner");
        let mtime = pax_value(b"mtime").map(|v| String::from_utf8(v).unwrap().split('.').next().unwrap().parse::<i64>().unwrap());
        assert_eq!(mtime.unwrap_or(h.mtime().unwrap() as i64), md.mtime(), "{what}: mtime");
        for (k, v) in &pax {
            if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                let got = xattr::get(&on_disk, std::ffi::OsStr::from_bytes(x)).unwrap();
                assert_eq!(got.as_deref(), Some(v.as_slice()), "{what}: xattr {}", String::from_utf8_lossy(x));
            }
        }
        let ft = md.file_type();
        match h.entry_type() {
            tar::EntryType::Directory => assert!(ft.is_dir(), "{what}: a directory"),
            tar::EntryType::Symlink => {
                assert!(ft.is_symlink(), "{what}: a symlink");
                let link = e.link_name_bytes().unwrap().into_owned();
                assert_eq!(link, std::fs::read_link(&on_disk).unwrap().as_os_str().as_bytes(), "{what}: link target");
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().unwrap().into_owned();
                let target = src.join(std::ffi::OsStr::from_bytes(target.strip_prefix(b"./").unwrap_or(&target)));
                assert_eq!(std::fs::metadata(target).unwrap().ino(), md.ino(), "{what}: hard link to the same file");
            }
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let want = std::fs::read(&on_disk).unwrap();
                let got = match pax_value(b"GNU.sparse.major") {
                    Some(_) => {
                        let size = String::from_utf8(pax_value(b"GNU.sparse.realsize").unwrap()).unwrap().parse().unwrap();
                        unsparse(&data, size)
                    }
                    None => data,
                };
                assert!(got == want, "{what}: data differs ({} bytes read, {} in the source)", got.len(), want.len());
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let kind = if ft.is_char_device() { tar::EntryType::Char } else { tar::EntryType::Block };
                assert_eq!(h.entry_type(), kind, "{what}: device kind");
                let rdev = md.rdev();
                assert_eq!(
                    (h.device_major().unwrap(), h.device_minor().unwrap()),
                    (Some(nix::sys::stat::major(rdev) as u32), Some(nix::sys::stat::minor(rdev) as u32)),
                    "{what}"
                );
            }
            tar::EntryType::Fifo => assert!(ft.is_fifo(), "{what}: a FIFO"),
            other => panic!("{what}: unexpected member type {other:?}"),
        }
        seen.insert(rel);
    }
    let snap = snapshot(src, SKIP);
    for p in snap.keys() {
        assert!(seen.contains(p) || p.as_os_str().is_empty(), "{}: in the source, not found by the tar crate", p.display());
    }
}

/// A GNU sparse 1.0 member's data back to the file: the map (count, then
/// offset and length per region, one number a line, padded to 512 bytes),
/// then the regions one after the other.
fn unsparse(data: &[u8], size: usize) -> Vec<u8> {
    let mut numbers = Vec::new();
    let mut pos = 0;
    while numbers.is_empty() || numbers.len() < 1 + 2 * numbers[0] {
        let end = pos + data[pos..].iter().position(|&b| b == b'\n').unwrap();
        numbers.push(std::str::from_utf8(&data[pos..end]).unwrap().parse::<usize>().unwrap());
        pos = end + 1;
    }
    pos = pos.div_ceil(512) * 512;
    let mut out = vec![0u8; size];
    for r in 0..numbers[0] {
        let (off, len) = (numbers[1 + 2 * r], numbers[2 + 2 * r]);
        out[off..off + len].copy_from_slice(&data[pos..pos + len]);
        pos += len;
    }
    out
}

#[test]
fn round_trip_zstd_every_kind_of_entry() {
    round_trip("zstd", "tar.zst", "--zstd");
}

#[test]
fn round_trip_gzip_every_kind_of_entry() {
    round_trip("gzip", "tar.gz", "-z");
}

#[test]
fn round_trip_uncompressed() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let archive = t.path().join("a.tar");
    assert_eq!(create(&src, &archive, &["--compress", "none"]).status.code(), Some(0));
    let gnu = t.path().join("gnu");
    gnu_tar_extract(&archive, &gnu, "--no-auto-compress");
    assert_same_tree(&src, &gnu, SKIP);
    second_reader_agrees(&archive, &src);
}

#[test]
fn excludes_and_one_file_system() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("var/log")).unwrap();
    std::fs::write(src.join("var/log/syslog.log"), b"x").unwrap();
    std::fs::write(src.join("var/keep"), b"x").unwrap();
    std::fs::create_dir_all(src.join("cache/deep")).unwrap();
    std::fs::write(src.join("cache/deep/f"), b"x").unwrap();
    let archive = t.path().join("a.tar.zst");
    let cache = src.join("cache");
    let out = create(&src, &archive, &["--exclude", "*.log", "--exclude", &format!("{}", cache.display())]);
    assert_eq!(out.status.code(), Some(0));
    let mut c = rescue();
    c.args(["archive", "list"]).arg(&archive);
    let listing = String::from_utf8_lossy(&run(c).stdout).into_owned();
    assert!(listing.contains("var/keep"));
    assert!(!listing.contains("syslog.log"), "{listing}");
    assert!(!listing.contains("cache"), "{listing}");

    // --one-file-system: a mount below the source is archived as an empty directory.
    let lfs = LoopFs::new(16);
    std::fs::write(lfs.mnt.join("inside"), b"other fs").unwrap();
    let archive2 = t.path().join("b.tar.zst");
    let mut c = rescue();
    c.args(["archive", "create", "--one-file-system"]).arg(lfs.dir.path()).arg("-o").arg(&archive2);
    assert_eq!(run(c).status.code(), Some(0));
    let mut c = rescue();
    c.args(["archive", "list"]).arg(&archive2);
    let listing = String::from_utf8_lossy(&run(c).stdout).into_owned();
    assert!(listing.contains("/mnt\n"), "the mount point itself is archived: {listing}");
    assert!(!listing.contains("inside"), "{listing}");
}

#[test]
fn one_file_system_enters_nested_btrfs_subvolumes_but_not_snapshots_or_mounts() {
    require(TOOLS);
    let fs = LoopFs::btrfs(128);
    let m = &fs.mnt;
    let dev = fs.dev().to_string();
    // A writable subvolume nested in the mounted one (as /var/lib/machines is), two deep;
    // a read-only snapshot of it; another subvolume mounted inside the tree as well.
    sh(&format!(
        "cd {m} && echo top >top && btrfs -q subvolume create nested && mkdir -p nested/deeper/dir && echo f >nested/deeper/dir/f \
         && btrfs -q subvolume create nested/inner && echo i >nested/inner/i \
         && btrfs -q subvolume snapshot -r nested snap && btrfs -q subvolume create other && echo o >other/o \
         && mkdir mp && mount -o subvol=other {dev} mp",
        m = m.display()
    ));
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _mp = Umount(m.join("mp"));
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("a.tar.zst");
    let mut c = rescue();
    c.args(["-v", "archive", "create", "--one-file-system", "-C"]).arg(m).arg(".").arg("-o").arg(&archive);
    let out = run(c);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut c = rescue();
    c.args(["archive", "list"]).arg(&archive);
    let listing = String::from_utf8_lossy(&run(c).stdout).into_owned();
    let has = |n: &str| listing.lines().any(|l| l.trim_end_matches('/').ends_with(n));
    for n in ["top", "nested/deeper/dir/f", "nested/inner/i", "other/o", "snap", "mp"] {
        assert!(has(n), "{n} should be in the archive:\n{listing}");
    }
    for n in ["snap/deeper", "mp/o"] {
        assert!(!has(n), "{n} should not be in the archive:\n{listing}");
    }
    assert!(err.contains("is a read-only btrfs snapshot"), "{err}");
    // GNU tar gives back the nested subvolumes' files.
    let x = t.path().join("x");
    gnu_tar_extract(&archive, &x, "--zstd");
    assert_eq!(std::fs::read_to_string(x.join("nested/inner/i")).unwrap(), "i\n");
}

fn small_tree(t: &Path) -> PathBuf {
    let src = t.join("src");
    for i in 0..50 {
        let d = src.join(format!("dir{i:02}"));
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|x| (x * (i + 3) % 253) as u8).collect();
        std::fs::write(d.join("file"), data).unwrap();
    }
    src
}

#[test]
fn truncated_archive_is_a_clear_error_and_keeps_what_was_extracted() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    for (compress, name) in [("zstd", "a.tar.zst"), ("gzip", "a.tar.gz"), ("none", "a.tar")] {
        let archive = t.path().join(name);
        assert_eq!(create(&src, &archive, &["--compress", compress]).status.code(), Some(0));
        let data = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &data[..data.len() / 2]).unwrap();

        let mut c = rescue();
        c.args(["archive", "verify"]).arg(&archive);
        let out = run(c);
        assert_eq!(out.status.code(), Some(3), "{compress}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("truncated") || err.contains("damaged"), "{compress}: {err}");
        assert!(err.contains("last member read: dir"), "the error names the last good member ({compress}): {err}");

        let target = t.path().join(format!("out-{compress}"));
        let mut c = rescue();
        c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&target);
        let out = run(c);
        assert_eq!(out.status.code(), Some(3));
        assert!(target.join("dir00/file").is_file(), "what was extracted before the damage stays");
        assert_eq!(std::fs::read(target.join("dir00/file")).unwrap(), std::fs::read(src.join("dir00/file")).unwrap());
    }
}

#[test]
fn flipped_byte_is_detected_and_named() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    // Uncompressed: the manifest names the damaged member.
    let archive = t.path().join("a.tar");
    assert_eq!(create(&src, &archive, &["--compress", "none"]).status.code(), Some(0));
    let mut data = std::fs::read(&archive).unwrap();
    let needle: Vec<u8> = (0..64u32).map(|x| (x * (17 + 3) % 253) as u8).collect(); // start of dir17/file
    let pos = data.windows(needle.len()).position(|w| w == needle.as_slice()).unwrap();
    data[pos + 1000] ^= 0x01;
    std::fs::write(&archive, &data).unwrap();
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&archive);
    let out = run(c);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("damaged: dir17/file"), "{err}");
    // Extraction reports it too.
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(t.path().join("x"));
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged: dir17/file"));

    // zstd: the stream checksum catches it; the error names where.
    let archive = t.path().join("a.tar.zst");
    assert_eq!(create(&src, &archive, &[]).status.code(), Some(0));
    let mut data = std::fs::read(&archive).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    std::fs::write(&archive, &data).unwrap();
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&archive);
    let out = run(c);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("damaged") || err.contains("truncated") || err.contains("member"), "{err}");
}

/// Copy an uncompressed archive, leaving out one member.
fn drop_member(input: &Path, output: &Path, drop: &[u8]) {
    let f = std::fs::File::open(input).unwrap();
    let mut r = format::TarReader::new(f);
    let mut out = std::fs::File::create(output).unwrap();
    while let Some(m) = r.next_entry().unwrap() {
        let mut data = vec![0u8; m.stored_size() as usize];
        if m.kind == Kind::File && m.sparse.is_none() {
            r.read_data_exact(&mut data).unwrap();
        }
        if m.path == drop {
            continue;
        }
        format::write_header(&mut out, &m).unwrap();
        out.write_all(&data).unwrap();
        format::write_padding(&mut out, data.len() as u64).unwrap();
    }
    format::write_trailer(&mut out).unwrap();
}

#[test]
fn missing_member_is_named() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    let archive = t.path().join("a.tar");
    assert_eq!(create(&src, &archive, &["--compress", "none"]).status.code(), Some(0));
    let cut = t.path().join("cut.tar");
    drop_member(&archive, &cut, b"dir07/file");
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&cut);
    let out = run(c);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing: dir07/file"));
}

#[test]
fn path_traversal_members_are_neutralised() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let archive = t.path().join("evil.tar");
    {
        let mut f = std::fs::File::create(&archive).unwrap();
        let file = |path: &[u8], data: &[u8], f: &mut std::fs::File| {
            let mut m = EntryMeta::new(Kind::File, path.to_vec());
            m.size = data.len() as u64;
            format::write_header(f, &m).unwrap();
            f.write_all(data).unwrap();
            format::write_padding(f, data.len() as u64).unwrap();
        };
        file(b"../outside/dotdot", b"escaped", &mut f);
        file(b"a/../../outside/dotdot2", b"escaped", &mut f);
        file(format!("{}/abs", outside.display()).as_bytes(), b"absolute", &mut f);
        // A symlink to a directory outside, then a file through it.
        let mut l = EntryMeta::new(Kind::Symlink, b"link".to_vec());
        l.link = outside.as_os_str().as_encoded_bytes().to_vec();
        format::write_header(&mut f, &l).unwrap();
        file(b"link/through-symlink", b"escaped", &mut f);
        // A hard link to a file outside.
        let mut h = EntryMeta::new(Kind::HardLink, b"hard".to_vec());
        h.link = b"../outside/victim".to_vec();
        format::write_header(&mut f, &h).unwrap();
        file(b"ok/normal", b"fine", &mut f);
        format::write_trailer(&mut f).unwrap();
    }
    std::fs::write(outside.join("victim"), b"victim").unwrap();
    let target = t.path().join("target");
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&target);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "completed with warnings");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused member ../outside/dotdot"), "{err}");
    assert!(err.contains("refused member link/through-symlink"), "{err}");
    assert!(err.contains("refused member hard"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("victim")], "nothing was written outside the target");
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"victim");
    // The absolute member landed inside the target.
    let abs_inside = target.join(outside.strip_prefix("/").unwrap()).join("abs");
    assert_eq!(std::fs::read(abs_inside).unwrap(), b"absolute");
    assert_eq!(std::fs::read(target.join("ok/normal")).unwrap(), b"fine");
    assert!(std::fs::symlink_metadata(target.join("link")).unwrap().file_type().is_symlink());
}

#[test]
fn file_growing_during_backup_is_named_in_the_manifest_with_exit_code_4() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("steady"), b"steady").unwrap();
    let growing = src.join("growing.log");
    std::fs::write(&growing, vec![b'x'; 8 << 20]).unwrap();
    // A small one too (read whole by the reader threads).
    let small = src.join("small.log");
    std::fs::write(&small, vec![b'x'; 100_000]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [growing.clone(), small.clone()]
        .into_iter()
        .map(|path| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    f.write_all(&[b'y'; 4096]).unwrap();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let archive = t.path().join("a.tar.zst");
    let out = create(&src, &archive, &[]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(out.status.code(), Some(4), "written, but files changed while read: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("growing.log"), "{err}");
    assert!(err.contains("grew while being read") || err.contains("changed while being read"), "{err}");
    assert!(err.contains("small.log grew while being read"), "{err}");
    assert!(err.contains("completed with 2 warnings"), "{err}");
    assert!(err.contains("2 files changed while they were read"), "{err}");
    // The archive is complete and consistent.
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&archive);
    assert_eq!(run(c).status.code(), Some(0));
    let gnu = t.path().join("gnu");
    gnu_tar_extract(&archive, &gnu, "--zstd");
    assert_eq!(std::fs::read(gnu.join("steady")).unwrap(), b"steady");
    assert!(std::fs::metadata(gnu.join("growing.log")).unwrap().len() >= 8 << 20);
    assert!(std::fs::metadata(gnu.join("small.log")).unwrap().len() >= 100_000);
    // The manifest names both; a steady file is not named.
    let manifest = std::fs::read_to_string(gnu.join(format::MANIFEST_NAME)).unwrap();
    let mut changed = format::manifest_changed(&manifest);
    changed.sort();
    assert_eq!(changed, vec![b"growing.log".to_vec(), b"small.log".to_vec()], "{manifest}");
}

#[test]
fn full_destination_fails_cleanly_and_keeps_the_previous_archive() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    // Incompressible data larger than the destination.
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    for i in 0..6 {
        let mut buf = vec![0u8; 4 << 20];
        f.read_exact(&mut buf).unwrap();
        std::fs::write(src.join(format!("random{i}")), buf).unwrap();
    }
    let dest = LoopFs::new(16);
    let target = dest.mnt.join("host.tar.zst");
    std::fs::write(&target, b"the previous good archive").unwrap();
    let out = create(&src, &target, &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full"), "{err}");
    assert!(err.contains("previous archive is untouched"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"the previous good archive");
    let left: Vec<_> = std::fs::read_dir(&dest.mnt).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|n| !n.contains("partial")), "no partial file is left: {left:?}");

    // Already full: refused before anything is written.
    let filler = dest.mnt.join("filler");
    let _ = Command::new("dd").args(["if=/dev/zero", "bs=1M"]).arg(format!("of={}", filler.display())).output();
    let out = create(&src, &dest.mnt.join("second.tar.zst"), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full") && err.contains("nothing was written"), "{err}");
    assert!(!dest.mnt.join("second.tar.zst").exists());
}

#[test]
fn unreachable_nfs_fails_fast_with_a_clear_message() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    let started = Instant::now();
    let out = create(&src, Path::new("nfs://127.0.0.1:1/export/host.tar.zst"), &[]);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NFS server 127.0.0.1 port 1 is unreachable"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
}

fn write_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let p = dir.join("rescue.toml");
    std::fs::write(&p, format!("log-dir = \"{}/logs\"\nstate-dir = \"{}/state\"\n[backup]\nurl = \"{url}\"\n{extra}", dir.display(), dir.display())).unwrap();
    p
}

#[test]
fn mkbackuponly_and_restoreonly_round_trip() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    // A system root with /boot (recorded as its own mount) and /scratch (excluded in the descriptor).
    let root = t.path().join("root");
    build_tree(&root);
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    std::fs::create_dir_all(root.join("scratch")).unwrap();
    std::fs::write(root.join("scratch/junk"), b"junk").unwrap();
    std::fs::write(root.join("var/lib/app.tmp"), b"excluded by pattern").unwrap();
    let backups = t.path().join("backups");
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    let cfg = write_config(t.path(), &format!("file://{}", backups.display()), "exclude = [\"*.tmp\"]\nkeep = 2\n");

    let backup = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
        c.arg("--config").arg(&cfg).arg("mkbackuponly").arg("--layout").arg(&layout).arg("--root").arg(&root);
        run(c)
    };
    assert_eq!(backup().status.code(), Some(0));
    assert_eq!(backup().status.code(), Some(0));
    assert_eq!(backup().status.code(), Some(0));
    let host_dir = backups.join("testhost");
    let files = rescue::backup::list_backups(&host_dir).unwrap();
    assert_eq!(files.len(), 2, "backup.keep = 2 keeps the two newest: {files:?}");
    assert!(std::fs::read_dir(&host_dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial")));

    let target = t.path().join("mnt-local");
    std::fs::create_dir_all(&target).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("restoreonly").arg("--layout").arg(&layout).arg("--target").arg(&target);
    assert_eq!(run(c).status.code(), Some(0));
    assert!(!target.join("scratch/junk").exists(), "excluded mounts are not backed up");
    assert!(target.join("scratch").is_dir() || !target.join("scratch").exists());
    assert!(!target.join("var/lib/app.tmp").exists(), "exclude patterns apply");
    assert_eq!(std::fs::read(target.join("boot/vmlinuz")).unwrap(), b"kernel");
    let mut skip = SKIP.to_vec();
    skip.extend(["scratch", "scratch/junk", "var/lib/app.tmp"]);
    assert_same_tree(&root, &target, &skip);
}

#[test]
fn mkbackuponly_to_unreachable_nfs_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    let cfg = write_config(t.path(), "nfs://127.0.0.1:1/backups", "timeout = 3\n");
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("mkbackuponly").arg("--layout").arg(&layout).arg("--root").arg(t.path());
    let started = Instant::now();
    let out = run(c);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

/// An rsync daemon on a free local port, stopped on drop.
struct RsyncDaemon {
    child: std::process::Child,
    port: u16,
}

impl RsyncDaemon {
    fn start(dir: &Path) -> RsyncDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let module = dir.join("module");
        std::fs::create_dir_all(&module).unwrap();
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, format!("use chroot = no\nuid = root\ngid = root\n[backups]\npath = {}\nread only = false\n", module.display())).unwrap();
        let child = Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", conf.display()))
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "the rsync daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RsyncDaemon { child, port }
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rsync_method_round_trip() {
    require(&[("rsync", "rsync"), ("setfacl", "acl"), ("mkfifo", "coreutils")]);
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    build_tree(&root);
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    std::fs::create_dir_all(root.join("scratch")).unwrap();
    std::fs::write(root.join("scratch/junk"), b"junk").unwrap();
    let daemon = RsyncDaemon::start(t.path());
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    let cfg = write_config(t.path(), &format!("rsync://127.0.0.1:{}/backups", daemon.port), "");
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("mkbackuponly").arg("--layout").arg(&layout).arg("--root").arg(&root);
    assert_eq!(run(c).status.code(), Some(0));
    assert!(t.path().join("module/testhost/boot/vmlinuz").is_file());
    assert!(!t.path().join("module/testhost/scratch/junk").exists(), "excluded mounts are not copied");

    let target = t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("restoreonly").arg("--layout").arg(&layout).arg("--target").arg(&target);
    assert_eq!(run(c).status.code(), Some(0));
    assert_eq!(std::fs::read(target.join("boot/vmlinuz")).unwrap(), b"kernel");
    assert_eq!(std::fs::read(target.join("var/lib/big.bin")).unwrap(), std::fs::read(root.join("var/lib/big.bin")).unwrap());
    assert_eq!(xattr::get(target.join("usr/bin/ping"), "security.capability").unwrap(), Some(capability_value()));
}

#[test]
fn iso_destination_is_staged_and_restored() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let root = small_tree(t.path());
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    let iso_dir = t.path().join("iso");
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    let cfg = write_config(t.path(), "iso:///backup", &format!("iso-dir = \"{}\"\n", iso_dir.display()));
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("mkbackuponly").arg("--layout").arg(&layout).arg("--root").arg(&root);
    assert_eq!(run(c).status.code(), Some(0));
    assert_eq!(rescue::backup::list_backups(&iso_dir.join("backup/testhost")).unwrap().len(), 1);
    let target = t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("restoreonly").arg("--layout").arg(&layout).arg("--target").arg(&target);
    assert_eq!(run(c).status.code(), Some(0));
    assert_same_tree(&root, &target, &[]);
}

/// A loop device holding an ext4 filesystem with a label, not mounted; detached on drop.
struct LabelledLoop {
    dev: String,
    _dir: tempfile::TempDir,
}

impl Drop for LabelledLoop {
    fn drop(&mut self) {
        // rescue unmounts its own mounts; make sure before detaching.
        let _ = Command::new("sh").arg("-c").arg(format!("grep -q '^{} ' /proc/mounts && umount {}", self.dev, self.dev)).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn usb_destination_by_label_is_mounted_and_restored() {
    require(&[("losetup", "mount"), ("mkfs.ext4", "e2fsprogs"), ("blkid", "util-linux")]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("usb.img");
    std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let out = Command::new("losetup").args(["-f", "--show"]).arg(&img).output().unwrap();
    assert!(out.status.success());
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let label = format!("RT{}", std::process::id() % 100_000_000);
    let usb = LabelledLoop { dev: dev.clone(), _dir: dir };
    sh(&format!("mkfs.ext4 -q -F -L {label} {dev}"));

    let t = tempfile::tempdir().unwrap();
    let root = small_tree(t.path());
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    let cfg = write_config(t.path(), &format!("usb://{label}"), "");
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("mkbackuponly").arg("--layout").arg(&layout).arg("--root").arg(&root);
    assert_eq!(run(c).status.code(), Some(0));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.lines().any(|l| l.starts_with(&format!("{dev} "))), "the USB filesystem is unmounted afterwards");

    let target = t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&cfg).arg("restoreonly").arg("--layout").arg(&layout).arg("--target").arg(&target);
    assert_eq!(run(c).status.code(), Some(0));
    assert_same_tree(&root, &target, &[]);
    drop(usb);
}

#[test]
fn extracts_archives_made_by_gnu_tar() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let archive = t.path().join("gnu.tar.gz");
    let out = Command::new("tar")
        .args(["--format=posix", "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--numeric-owner", "-czf"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    // GNU tar says "socket ignored" and exits 0 or 1 for it.
    assert!(out.status.code().unwrap_or(9) <= 1, "{}", String::from_utf8_lossy(&out.stderr));
    let target = t.path().join("ours");
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&target);
    let out = run(c);
    // No manifest in a GNU tar archive: said, but not a failure. ACLs with
    // user and group names (GNU tar writes names) are resolved.
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest"));
    assert_same_tree(&src, &target, SKIP);
}

// ---------------------------------------------------------------- hostile archives (issue 14)

fn extract_raw(t: &Path, name: &str, tar: &[u8]) -> (std::process::Output, PathBuf) {
    let archive = t.join(name);
    std::fs::write(&archive, tar).unwrap();
    let target = t.join(format!("{name}.out"));
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&target);
    (run(c), target)
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A directory member, then a later member that puts a symlink (or a hard
/// link to one) at its name: the directory's deferred mode must never reach
/// the file the symlink points at.
#[test]
fn later_members_cannot_redirect_a_directory_s_metadata_outside() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"victim").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let abs = victim.as_os_str().as_encoded_bytes().to_vec();

    // 1. `d/` mode 6777, then `d` -> the outside file (absolute).
    let mut a = Vec::new();
    raw_member(&mut a, raw_header(b"d/", b'5', 0, 0o6777, b""), b"");
    raw_member(&mut a, raw_header(b"d", b'2', 0, 0o777, &abs), b"");
    raw_end(&mut a);
    // 2. `x/d/` mode 6777, then `x/d` -> ../../victim (relative, out of the target).
    let mut b = Vec::new();
    raw_member(&mut b, raw_header(b"x/", b'5', 0, 0o755, b""), b"");
    raw_member(&mut b, raw_header(b"x/d/", b'5', 0, 0o6777, b""), b"");
    raw_member(&mut b, raw_header(b"x/d", b'2', 0, 0o777, b"../../victim"), b"");
    raw_end(&mut b);
    // 3. `d/` mode 6777, a symlink `s` -> the outside file, then `d` a hard link to `s`.
    let mut c = Vec::new();
    raw_member(&mut c, raw_header(b"d/", b'5', 0, 0o6777, b""), b"");
    raw_member(&mut c, raw_header(b"s", b'2', 0, 0o777, &abs), b"");
    raw_member(&mut c, raw_header(b"d", b'1', 0, 0o644, b"s"), b"");
    raw_end(&mut c);

    for (name, tar) in [("abs.tar", a), ("rel.tar", b), ("hardlink.tar", c)] {
        // The relative link must resolve to the victim from inside the target.
        let (out, target) = extract_raw(t.path(), name, &tar);
        assert_eq!(mode_of(&victim), 0o644, "{name}: the mode of a file outside the target changed");
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        assert_eq!(out.status.code(), Some(1), "{name}: completed with warnings (the directory's metadata could not be set)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("d"), "{name}: the warning names the directory: {err}");
        assert!(target.is_dir());
    }
}

/// Every sparse-map attack is a clear error naming the member, and fast.
#[test]
fn hostile_sparse_maps_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // 2 * count wraps around: a panic ("capacity overflow") before.
        ("overflow", b"9223372036854775808\n0\n0\n".to_vec()),
        // A number too large for 64 bits.
        ("huge-number", b"1\n99999999999999999999999\n0\n".to_vec()),
        // A region at the last byte Linux cannot address.
        ("offset-2^64-1", b"1\n18446744073709551615\n0\n".to_vec()),
        // Not numbers.
        ("garbage", b"1\nzero\n0\n".to_vec()),
    ];
    for (name, map) in cases {
        let member = format!("sparse-{name}");
        let mut tar = Vec::new();
        raw_sparse(&mut tar, member.as_bytes(), None, &map, b"");
        raw_member(&mut tar, raw_header(b"after", b'0', 2, 0o644, b""), b"ok");
        raw_end(&mut tar);
        let archive = t.path().join(format!("{name}.tar"));
        std::fs::write(&archive, &tar).unwrap();
        for cmd in ["list", "verify", "extract"] {
            let mut c = rescue();
            c.args(["archive", cmd]).arg(&archive);
            if cmd == "extract" {
                c.arg("--target").arg(t.path().join(format!("{name}.out")));
            }
            let (out, _) = run_within(c, 30).expect("finishes");
            assert_eq!(out.status.code(), Some(3), "{name} {cmd}: a clear error, not a panic (101) or success");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&member), "{name} {cmd}: the error names the member: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

/// 887 bytes of zstd: a sparse count of 10^15, then "0\n" lines up to the
/// old 64 MiB cap. Parsed quadratically before (over 60 s); now refused at once.
#[test]
fn sparse_map_bomb_is_refused_fast() {
    let t = tempfile::tempdir().unwrap();
    let mut map = b"1000000000000000\n".to_vec();
    map.extend(b"0\n".repeat(32 << 20));
    let mut tar = Vec::new();
    raw_sparse(&mut tar, b"bomb", None, &map, b"");
    raw_end(&mut tar);
    let z = zstd_bytes(&tar);
    assert!(z.len() < 8192, "a small file: {}", z.len());
    let archive = t.path().join("bomb.tar.zst");
    std::fs::write(&archive, &z).unwrap();
    let mut c = rescue();
    c.args(["archive", "list"]).arg(&archive);
    let (out, took) = run_within(c, 30).expect("list finishes within 30 s");
    assert_eq!(out.status.code(), Some(3));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bomb"));
}

/// A valid sparse map of 400 000 regions reads in linear time (43 s before).
#[test]
fn sparse_map_with_400k_regions_is_fast() {
    let t = tempfile::tempdir().unwrap();
    let n = 400_000u64;
    let mut map = format!("{n}\n").into_bytes();
    for i in 0..n {
        map.extend(format!("{}\n1\n", i * 8192).as_bytes());
    }
    let data = vec![b'x'; n as usize];
    let mut tar = Vec::new();
    raw_sparse(&mut tar, b"fragmented", Some(n * 8192), &map, &data);
    raw_end(&mut tar);
    let archive = t.path().join("frag.tar");
    std::fs::write(&archive, &tar).unwrap();
    for cmd in ["list", "verify"] {
        let mut c = rescue();
        c.args(["archive", cmd]).arg(&archive);
        let (out, took) = run_within(c, 60).expect("finishes within 60 s");
        // verify: no manifest (hand-made), which is exit 3 with that reason.
        if cmd == "list" {
            assert_eq!(out.status.code(), Some(0));
            assert!(String::from_utf8_lossy(&out.stdout).contains("fragmented"));
        } else {
            assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest"), "the whole map was read");
        }
        assert!(took < Duration::from_secs(10), "{cmd} took {took:?}");
    }
}

/// Consecutive pax headers: each under the old per-header cap, together over
/// the bound on one member's extended headers.
#[test]
fn consecutive_pax_headers_are_bounded_in_total() {
    let t = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    for _ in 0..3 {
        let rec = pax_record(b"comment", &vec![b'a'; 30 << 20]);
        raw_pax(&mut tar, &rec);
    }
    raw_member(&mut tar, raw_header(b"f", b'0', 2, 0o644, b""), b"ok");
    raw_end(&mut tar);
    let archive = t.path().join("pile.tar.zst");
    std::fs::write(&archive, zstd_bytes(&tar)).unwrap();
    for cmd in ["list", "extract"] {
        let mut c = rescue();
        c.args(["archive", cmd]).arg(&archive);
        if cmd == "extract" {
            c.arg("--target").arg(t.path().join("out"));
        }
        let out = run(c);
        assert_eq!(out.status.code(), Some(3), "{cmd}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("extended headers"), "{cmd}");
    }
}

/// Damage in the compressed stream's own trailer (gzip CRC and size, a cut
/// zstd frame) after the tar end marker fails verify and extract.
#[test]
fn damage_after_the_tar_end_marker_fails_verify() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (compress, ext) in [("gzip", "tar.gz"), ("zstd", "tar.zst")] {
        let archive = t.path().join(format!("good.{ext}"));
        assert_eq!(create(&src, &archive, &["--compress", compress]).status.code(), Some(0));
        let data = std::fs::read(&archive).unwrap();
        for cut in [4usize, 7, 12, 20] {
            cases.push((format!("{compress}-cut-{cut}.{ext}"), data[..data.len() - cut].to_vec()));
        }
        if compress == "gzip" {
            let n = data.len();
            let mut crc = data.clone();
            crc[n - 8] ^= 0x01;
            cases.push((format!("gzip-crc.{ext}"), crc));
            let mut isize = data.clone();
            isize[n - 2] ^= 0x01;
            cases.push((format!("gzip-isize.{ext}"), isize));
        }
    }
    for (name, bytes) in cases {
        let archive = t.path().join(&name);
        std::fs::write(&archive, &bytes).unwrap();
        let mut c = rescue();
        c.args(["archive", "verify"]).arg(&archive);
        let out = run(c);
        assert_eq!(out.status.code(), Some(3), "{name}: verify must fail");
        let mut c = rescue();
        c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(t.path().join(format!("{name}.out")));
        assert_eq!(run(c).status.code(), Some(3), "{name}: extract must fail");
    }
}

/// Names no filesystem takes are warnings naming the member; the extract
/// goes on. A path longer than PATH_MAX is restored (every call is relative
/// to an open directory).
#[test]
fn unwritable_names_are_warnings_and_the_extract_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_pax(&mut tar, &pax_record(b"path", b"nul\0byte"));
    raw_member(&mut tar, raw_header(b"placeholder", b'0', 1, 0o644, b""), b"1");
    let long_component = "c".repeat(300);
    raw_pax(&mut tar, &pax_record(b"path", format!("dir/{long_component}").as_bytes()));
    raw_member(&mut tar, raw_header(b"placeholder", b'0', 1, 0o644, b""), b"2");
    let deep: String = (0..40).map(|i| format!("{}{i:02}/", "p".repeat(120))).collect();
    let deep_file = format!("{deep}leaf");
    assert!(deep_file.len() > 4096);
    raw_pax(&mut tar, &pax_record(b"path", deep_file.as_bytes()));
    raw_member(&mut tar, raw_header(b"placeholder", b'0', 1, 0o644, b""), b"3");
    raw_member(&mut tar, raw_header(b"after", b'0', 2, 0o644, b""), b"ok");
    raw_end(&mut tar);
    let (out, target) = extract_raw(t.path(), "names.tar", &tar);
    assert_eq!(out.status.code(), Some(1), "completed with warnings");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nul"), "the NUL member is named: {err}");
    assert!(err.contains(&long_component), "the long-component member is named: {err}");
    assert_eq!(std::fs::read(target.join("after")).unwrap(), b"ok", "the extract went on");
    let found = Command::new("find").arg(&target).args(["-name", "leaf", "-type", "f"]).output().unwrap();
    assert!(String::from_utf8_lossy(&found.stdout).contains("/leaf"), "the deep file is restored");
}

/// A zstd frame asking for a window above what the writer uses is refused
/// with a message that says so; the writer's highest level reads back.
#[test]
fn zstd_window_is_capped_at_what_the_writer_produces() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    // 24 MB of data that compresses only with a long window.
    let noise: Vec<u8> = (0..6_000_000u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.join("big"), noise.repeat(4)).unwrap();
    let ours = t.path().join("l19.tar.zst");
    assert_eq!(create(&src, &ours, &["--level", "19"]).status.code(), Some(0));
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&ours);
    assert_eq!(run(c).status.code(), Some(0), "the writer's highest level reads back");

    let plain = t.path().join("a.tar");
    assert_eq!(create(&src, &plain, &["--compress", "none"]).status.code(), Some(0));
    let wide = t.path().join("wide.tar.zst");
    sh(&format!("zstd -q -1 --long=27 -c < {} > {}", plain.display(), wide.display()));
    let mut c = rescue();
    c.args(["archive", "verify"]).arg(&wide);
    let out = run(c);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("window"), "the error says why");
}

/// A zstd archive is a row of independent frames (a new one every 4 MiB of
/// tar stream): `zstd` counts them and reads them as one stream, GNU tar
/// extracts it, and our extraction (which decompresses them in parallel)
/// gives back the same tree.
#[test]
fn a_zstd_archive_is_independent_frames_the_standard_tools_read() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = small_tree(t.path());
    // 18 MB of barely compressible data: five frames at least.
    let noise: Vec<u8> = (0..18_000_000u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.join("big"), &noise).unwrap();
    let archive = t.path().join("a.tar.zst");
    assert_eq!(create(&src, &archive, &[]).status.code(), Some(0));
    let listed = String::from_utf8(Command::new("zstd").arg("-lv").arg(&archive).output().unwrap().stdout).unwrap();
    let frames: usize = listed.lines().find_map(|l| l.trim().strip_prefix("# Zstandard Frames:")).map(|n| n.trim().parse().unwrap()).unwrap_or(0);
    assert!(frames >= 5, "expected one frame per 4 MiB:\n{listed}");
    sh(&format!("zstd -q -t {}", archive.display()));
    let gnu = t.path().join("gnu");
    gnu_tar_extract(&archive, &gnu, "--zstd");
    assert_same_tree(&src, &gnu, SKIP);
    let ours = t.path().join("ours");
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&archive).arg("--target").arg(&ours);
    assert_eq!(run(c).status.code(), Some(0));
    assert_same_tree(&src, &ours, SKIP);
    // A frame damaged in the middle: the error, and the files before it are there.
    let mut data = std::fs::read(&archive).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    let bad = t.path().join("bad.tar.zst");
    std::fs::write(&bad, &data).unwrap();
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(&bad).arg("--target").arg(t.path().join("bad"));
    let out = run(c);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame at byte"), "{}", String::from_utf8_lossy(&out.stderr));
}
