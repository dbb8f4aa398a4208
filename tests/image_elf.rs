//! ELF dependency resolution on fixtures (tests/fixtures/image/elf) and on
//! the system's own binaries.

mod common;

use std::path::{Path, PathBuf};

use rescue::image::elf::{read_elf, LibResolver};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image/elf")
}

#[test]
fn runpath_with_origin_finds_the_private_library() {
    let root = fixture_root();
    let r = LibResolver::with_dirs(&root, vec!["/usr/lib/x86_64-linux-gnu".into()]);
    let c = r.closure(&[PathBuf::from("/opt/app/bin/hello")]).unwrap();
    assert!(c.files.contains(Path::new("/opt/app/bin/hello")), "{c:?}");
    assert!(c.files.contains(Path::new("/opt/app/lib/libgreet.so")), "{c:?}");
    // The fixture root has no libc and no loader: both reported, naming who needs them.
    assert!(c.missing.iter().any(|(n, by)| n == "libc.so.6" && by == "/opt/app/lib/libgreet.so"), "{c:?}");
    assert!(c.missing.iter().any(|(n, _)| n == "/lib64/ld-linux-x86-64.so.2"), "{c:?}");
}

#[test]
fn rpath_is_used_when_there_is_no_runpath() {
    let root = fixture_root();
    let info = read_elf(&root.join("opt/app/bin/hello-rpath")).unwrap().unwrap();
    assert_eq!(info.rpath, vec!["/opt/app/lib"]);
    assert!(info.runpath.is_empty());
    let r = LibResolver::with_dirs(&root, vec![]);
    let c = r.closure(&[PathBuf::from("/opt/app/bin/hello-rpath")]).unwrap();
    assert!(c.files.contains(Path::new("/opt/app/lib/libgreet.so")), "{c:?}");
}

#[test]
fn library_not_on_any_path_is_missing() {
    let root = fixture_root();
    // No RUNPATH help: hello's RUNPATH is $ORIGIN/../lib; put the program
    // somewhere else by asking for the library directly from an empty list.
    let r = LibResolver::with_dirs(&root, vec![]);
    let c = r.closure(&[PathBuf::from("/opt/app/lib/libgreet.so")]).unwrap();
    assert!(c.missing.iter().any(|(n, _)| n == "libc.so.6"));
    assert!(!c.files.iter().any(|f| f.ends_with("libc.so.6")));
}

#[test]
fn system_ls_resolves_completely() {
    let r = LibResolver::for_root(Path::new("/"));
    let c = r.closure(&[PathBuf::from("/usr/bin/ls")]).unwrap();
    assert!(c.missing.is_empty(), "{:?}", c.missing);
    assert!(c.files.iter().any(|f| f.ends_with("libc.so.6")), "{c:?}");
    assert!(c.files.contains(Path::new("/lib64/ld-linux-x86-64.so.2")), "{c:?}");
    // ls needs libselinux, which needs libpcre2: the closure is transitive.
    assert!(c.files.iter().any(|f| f.to_string_lossy().contains("libpcre2")), "{c:?}");
}

/// `prog` with a `.note.dlopen` (systemd's ELF dlopen metadata) holding `json`,
/// added with objcopy to the fixture program `hello`.
#[allow(clippy::unwrap_used)]
fn with_dlopen_note(root: &Path, json: &str) -> PathBuf {
    let mut desc = json.as_bytes().to_vec();
    desc.push(0);
    desc.resize(desc.len().div_ceil(4) * 4, 0);
    let mut note = Vec::new();
    note.extend(4u32.to_le_bytes());
    note.extend((desc.len() as u32).to_le_bytes());
    note.extend(0x407c_0c0au32.to_le_bytes());
    note.extend(b"FDO\0");
    note.extend(desc);
    std::fs::write(root.join("note.bin"), note).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    common::sh(&format!(
        "objcopy --add-section .note.dlopen={n} --set-section-flags .note.dlopen=readonly --set-section-alignment .note.dlopen=4 {src} {dst}",
        n = root.join("note.bin").display(),
        src = fixture_root().join("opt/app/bin/hello").display(),
        dst = root.join("usr/bin/prog").display()
    ));
    PathBuf::from("/usr/bin/prog")
}

#[test]
fn dlopen_notes_bring_the_libraries_loaded_at_run_time() {
    // Debian 13's kmod declares liblzma and libzstd this way (it reads .ko.xz
    // modules through them) and links neither: without the note the rescue
    // system's modprobe could not load a compressed module.
    common::require_tools(&["objcopy"]);
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::copy(fixture_root().join("opt/app/lib/libgreet.so"), libdir.join("liblzma.so.5")).unwrap();
    let prog = with_dlopen_note(
        root,
        r#"[{"feature":"xz","priority":"recommended","soname":["liblzma.so.5"]},{"feature":"zstd","soname":["libzstd.so.1"]},{"feature":"fido2","priority":"suggested","soname":["libfido2.so.1"]}]"#,
    );
    let info = read_elf(&root.join("usr/bin/prog")).unwrap().unwrap();
    assert_eq!(info.dlopen.len(), 2, "{info:?}");
    let r = LibResolver::with_dirs(root, vec!["/usr/lib/x86_64-linux-gnu".into()]);
    let c = r.closure(std::slice::from_ref(&prog)).unwrap();
    assert!(c.files.contains(Path::new("/usr/lib/x86_64-linux-gnu/liblzma.so.5")), "{c:?}");
    // A recommended library the system lacks is a feature it lacks too: not missing.
    assert!(!c.missing.iter().any(|(n, _)| n.contains("libzstd") || n.contains("libfido2")), "{c:?}");

    // A required one is.
    let prog = with_dlopen_note(root, r#"[{"priority":"required","soname":["libcryptsetup.so.12"]}]"#);
    let c = r.closure(&[prog]).unwrap();
    assert!(c.missing.iter().any(|(n, by)| n == "libcryptsetup.so.12" && by == "/usr/bin/prog"), "{c:?}");
}
