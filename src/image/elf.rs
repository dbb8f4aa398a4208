//! Which shared libraries a program needs, found by reading ELF files the way
//! the dynamic loader does (PT_INTERP, DT_NEEDED, DT_RPATH/DT_RUNPATH with
//! `$ORIGIN`, the directories of `/etc/ld.so.conf`, the default directories),
//! never by running `ldd` (which executes the program's loader and cannot look
//! into another root). Libraries a program `dlopen()`s are followed too when
//! it declares them in a `.note.dlopen` ELF note (systemd's "ELF dlopen
//! metadata"; Debian 13's kmod loads liblzma and libzstd that way, to read
//! `.ko.xz`/`.ko.zst` modules, and systemd 257 its optional libraries).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use goblin::elf::Elf;

/// What the loader needs to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
    /// Libraries declared in `.note.dlopen` with priority `required` or
    /// `recommended` (each entry: its sonames, any one will do).
    pub dlopen: Vec<Dlopen>,
    pub is_64: bool,
    pub machine: u16,
}

/// One `.note.dlopen` entry: a feature the program loads at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dlopen {
    pub sonames: Vec<String>,
    /// The program does not work without it (else: recommended, taken when found).
    pub required: bool,
}

/// The note type and owner of systemd's ELF dlopen metadata.
const NOTE_DLOPEN_TYPE: u32 = 0x407c_0c0a;
const NOTE_DLOPEN_OWNER: &str = "FDO";

#[derive(serde::Deserialize)]
struct DlopenEntry {
    #[serde(default)]
    soname: Vec<String>,
    #[serde(default)]
    priority: Option<String>,
}

/// The entries of one `.note.dlopen` descriptor (a NUL-terminated JSON array);
/// `suggested` ones are left out, malformed notes give nothing.
fn parse_dlopen_note(desc: &[u8]) -> Vec<Dlopen> {
    let text = desc.split(|b| *b == 0).next().unwrap_or_default();
    let Ok(entries) = serde_json::from_slice::<Vec<DlopenEntry>>(text) else { return Vec::new() };
    entries
        .into_iter()
        .filter(|e| !e.soname.is_empty())
        .filter_map(|e| match e.priority.as_deref().unwrap_or("recommended") {
            "suggested" => None,
            p => Some(Dlopen { sonames: e.soname, required: p == "required" }),
        })
        .collect()
}

/// Read the dynamic section of a file. `Ok(None)` when it is not an ELF file
/// (a shell script, a text file): those have no libraries to follow.
pub fn read_elf(path: &Path) -> Result<Option<ElfInfo>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let elf = Elf::parse(&data).with_context(|| format!("{} looks like an ELF file but cannot be parsed", path.display()))?;
    Ok(Some(ElfInfo {
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: elf.rpaths.iter().flat_map(|s| s.split(':')).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        runpath: elf.runpaths.iter().flat_map(|s| s.split(':')).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        dlopen: elf
            .iter_note_sections(&data, Some(".note.dlopen"))
            .into_iter()
            .flatten()
            .filter_map(|n| n.ok())
            .filter(|n| n.n_type == NOTE_DLOPEN_TYPE && n.name.trim_end_matches('\0') == NOTE_DLOPEN_OWNER)
            .flat_map(|n| parse_dlopen_note(n.desc))
            .collect(),
        is_64: elf.is_64,
        machine: elf.header.e_machine,
    }))
}

/// Finds libraries by name in a (possibly different) root file system.
#[derive(Debug, Clone)]
pub struct LibResolver {
    /// Root the search paths are relative to (`/` for the running system).
    root: PathBuf,
    /// Directories from ld.so.conf followed by the defaults, in search order.
    dirs: Vec<PathBuf>,
}

/// The directories the loader always searches after ld.so.conf's, on
/// Debian-style multiarch and on lib64 distributions.
const DEFAULT_DIRS: &[&str] = &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

impl LibResolver {
    /// A resolver for the system under `root`, reading `root/etc/ld.so.conf`.
    pub fn for_root(root: &Path) -> Self {
        let mut dirs = Vec::new();
        read_ld_so_conf(root, Path::new("/etc/ld.so.conf"), &mut dirs, 0);
        for d in DEFAULT_DIRS {
            let d = PathBuf::from(d);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        Self { root: root.to_path_buf(), dirs }
    }

    /// A resolver with an explicit directory list (tests).
    pub fn with_dirs(root: &Path, dirs: Vec<PathBuf>) -> Self {
        Self { root: root.to_path_buf(), dirs }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn host(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Find library `name` needed by the object at `origin_dir` (path inside
    /// the root), honouring the object's RPATH/RUNPATH. Only a library of the
    /// same class and machine counts (a 32-bit libc in /lib32 is skipped).
    fn find(&self, name: &str, info: &ElfInfo, origin_dir: &Path) -> Option<PathBuf> {
        if name.contains('/') {
            let p = PathBuf::from(name);
            return self.host(&p).is_file().then_some(p);
        }
        let expand = |d: &str| -> PathBuf {
            let o = origin_dir.to_string_lossy();
            PathBuf::from(d.replace("${ORIGIN}", &o).replace("$ORIGIN", &o))
        };
        // DT_RPATH is used only when there is no DT_RUNPATH (ld.so(8)).
        let mut search: Vec<PathBuf> = Vec::new();
        if info.runpath.is_empty() {
            search.extend(info.rpath.iter().map(|d| expand(d)));
        }
        search.extend(info.runpath.iter().map(|d| expand(d)));
        search.extend(self.dirs.iter().cloned());
        for dir in search {
            let cand = lexical_normalize(&dir.join(name));
            let host = self.host(&cand);
            if host.is_file() {
                match read_elf(&host) {
                    Ok(Some(l)) if l.is_64 == info.is_64 && l.machine == info.machine => return Some(cand),
                    _ => continue,
                }
            }
        }
        None
    }

    /// Every file (paths inside the root) that `programs` need to run: the
    /// programs themselves, their interpreters and the closure of their
    /// libraries. Missing libraries are returned separately so the caller can
    /// say which program would not start.
    pub fn closure(&self, programs: &[PathBuf]) -> Result<Closure> {
        let mut out = Closure::default();
        let mut todo: VecDeque<(PathBuf, String)> = programs.iter().map(|p| (p.clone(), p.display().to_string())).collect();
        while let Some((path, wanted_by)) = todo.pop_front() {
            if out.files.contains(&path) {
                continue;
            }
            let host = self.host(&path);
            if !host.exists() {
                out.missing.insert((path.display().to_string(), wanted_by));
                continue;
            }
            out.files.insert(path.clone());
            // Follow symlinks to learn $ORIGIN the way the loader does (it
            // uses the directory of the file as opened, after resolution).
            let real = std::fs::canonicalize(&host).unwrap_or_else(|_| host.clone());
            let Some(info) = read_elf(&real)? else { continue };
            let origin = real.strip_prefix(&self.root).map(|p| Path::new("/").join(p)).unwrap_or_else(|_| real.clone());
            let origin_dir = origin.parent().unwrap_or(Path::new("/")).to_path_buf();
            if let Some(interp) = &info.interpreter {
                todo.push_back((PathBuf::from(interp), path.display().to_string()));
            }
            for lib in &info.needed {
                match self.find(lib, &info, &origin_dir) {
                    Some(p) => todo.push_back((p, path.display().to_string())),
                    None => {
                        out.missing.insert((lib.clone(), path.display().to_string()));
                    }
                }
            }
            // dlopen()ed libraries: the first soname found; a recommended
            // one that is not installed is a feature the source lacks too.
            for d in &info.dlopen {
                match d.sonames.iter().find_map(|lib| self.find(lib, &info, &origin_dir)) {
                    Some(p) => todo.push_back((p, format!("{} (dlopen)", path.display()))),
                    None if d.required => {
                        out.missing.insert((d.sonames.join(" or "), path.display().to_string()));
                    }
                    None => {}
                }
            }
        }
        Ok(out)
    }
}

/// `a/b/../c` -> `a/c` without touching the file system (the loader does
/// the same with `$ORIGIN/../lib`).
fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The result of [`LibResolver::closure`].
#[derive(Debug, Default, Clone)]
pub struct Closure {
    /// Programs, interpreters and libraries, as paths inside the root.
    pub files: BTreeSet<PathBuf>,
    /// (library name or path, the file that needs it) that were not found.
    pub missing: BTreeSet<(String, String)>,
}

/// Add the directories of an ld.so.conf file (with its `include` globs) to `dirs`.
fn read_ld_so_conf(root: &Path, conf: &Path, dirs: &mut Vec<PathBuf>, depth: u32) {
    if depth > 8 {
        return;
    }
    let host = root.join(conf.strip_prefix("/").unwrap_or(conf));
    let Ok(text) = std::fs::read_to_string(&host) else { return };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
            let pattern = if pattern.starts_with('/') { PathBuf::from(pattern) } else { conf.parent().unwrap_or(Path::new("/")).join(pattern) };
            for inc in glob_files(root, &pattern) {
                read_ld_so_conf(root, &inc, dirs, depth + 1);
            }
        } else if !line.starts_with("hwcap") {
            let d = PathBuf::from(line);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
}

/// Expand a `dir/*.conf`-style pattern (a `*` in the last component only,
/// which is what ld.so.conf uses), sorted like the shell would.
fn glob_files(root: &Path, pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else { return Vec::new() };
    let name = name.to_string_lossy();
    let Some((pre, post)) = name.split_once('*') else {
        return vec![pattern.to_path_buf()];
    };
    let host_dir = root.join(dir.strip_prefix("/").unwrap_or(dir));
    let mut v: Vec<PathBuf> = std::fs::read_dir(host_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len())
                .map(|n| dir.join(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_interpreter_and_needed_of_a_system_binary() {
        let info = read_elf(Path::new("/bin/ls")).unwrap().unwrap();
        assert_eq!(info.interpreter.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        assert!(info.is_64);
    }

    /// A static executable (busybox-static here; the static build of rescue
    /// is one too) needs nothing else: the image gets the file alone.
    #[test]
    fn a_static_executable_has_no_closure() {
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.is_file(), "/bin/busybox is missing: apt-get install busybox-static");
        let info = read_elf(busybox).unwrap().unwrap();
        assert_eq!((info.interpreter.as_deref(), info.needed.len()), (None, 0), "{info:?}");
        let c = LibResolver::for_root(Path::new("/")).closure(&[busybox.to_path_buf()]).unwrap();
        assert_eq!(c.files.iter().collect::<Vec<_>>(), [busybox]);
        assert!(c.missing.is_empty(), "{:?}", c.missing);
        // And where the static build of rescue is given, the same for it.
        if let Some(p) = std::env::var_os("RESCUE_STATIC_BIN") {
            let p = PathBuf::from(p);
            let c = LibResolver::for_root(Path::new("/")).closure(std::slice::from_ref(&p)).unwrap();
            assert_eq!(c.files.iter().collect::<Vec<_>>(), [&p]);
        }
    }

    #[test]
    fn dlopen_notes_name_the_libraries_loaded_at_run_time() {
        // The descriptor of Debian 13's libkmod (kmod 34), NUL-padded as in the note.
        let desc =
            br#"[{"feature":"zstd","description":"Support for uncompressing zstd-compressed modules","priority":"recommended","soname":["libzstd.so.1"]}]"#;
        let mut padded = desc.to_vec();
        padded.extend([0, 0, 0]);
        assert_eq!(parse_dlopen_note(&padded), vec![Dlopen { sonames: vec!["libzstd.so.1".into()], required: false }]);
        let many = br#"[{"soname":["libfido2.so.1"],"priority":"suggested"},{"soname":["libcryptsetup.so.12","libcryptsetup.so.13"],"priority":"required"},{"soname":["liblzma.so.5"]}]"#;
        assert_eq!(
            parse_dlopen_note(many),
            vec![
                Dlopen { sonames: vec!["libcryptsetup.so.12".into(), "libcryptsetup.so.13".into()], required: true },
                Dlopen { sonames: vec!["liblzma.so.5".into()], required: false },
            ]
        );
        assert!(parse_dlopen_note(b"not json\0").is_empty());
    }

    #[test]
    fn scripts_are_not_elf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(read_elf(&p).unwrap(), None);
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        std::fs::write(etc.join("ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n/opt/first\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/b.conf"), "/opt/b # comment\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/a.conf"), "/opt/a\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/ignored.txt"), "/opt/no\n").unwrap();
        let r = LibResolver::for_root(root.path());
        let dirs: Vec<_> = r.dirs().iter().map(|d| d.display().to_string()).collect();
        assert_eq!(&dirs[..3], &["/opt/a", "/opt/b", "/opt/first"]);
        assert!(dirs.contains(&"/usr/lib/x86_64-linux-gnu".to_string()));
    }
}
