//! Which kernel modules (and firmware files) go into the rescue image: the
//! dependency closure, read from `modules.dep`, `modules.softdep` and
//! `modules.alias` of the kernel's module directory, of the modules the
//! rescue system needs (`needs::recovery`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::Cmd;

/// The module directory of one kernel (`/lib/modules/VERSION`), indexed.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    pub dir: PathBuf,
    /// Module name (with `_`) to its file (relative to `dir`) and the names it depends on.
    deps: BTreeMap<String, (PathBuf, Vec<String>)>,
    builtin: BTreeSet<String>,
    /// Exact (non-pattern) aliases: alias to module names.
    aliases: BTreeMap<String, Vec<String>>,
    /// Module name to the names modprobe loads with it (pre and post).
    softdeps: BTreeMap<String, Vec<String>>,
}

/// The result of a closure: what to copy and what was asked for but is not there.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    /// Module names in the image.
    pub modules: BTreeSet<String>,
    /// Their files, relative to the module directory.
    pub files: BTreeSet<PathBuf>,
    /// Asked-for names that are built into the kernel (nothing to copy).
    pub builtin: BTreeSet<String>,
    /// Asked-for names this kernel does not have.
    pub unknown: BTreeSet<String>,
}

/// Kernel module names treat `-` and `_` alike; we store `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a module file (`kernel/fs/ext4/ext4.ko.xz` -> `ext4`).
pub fn module_name(path: &Path) -> String {
    let base = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = base.strip_suffix(".xz").or_else(|| base.strip_suffix(".zst")).or_else(|| base.strip_suffix(".gz")).unwrap_or(&base);
    normalize(stem.strip_suffix(".ko").unwrap_or(stem))
}

impl ModuleIndex {
    /// Read `modules.dep` (required), `modules.builtin`, `modules.alias` and
    /// `modules.softdep` (optional) from a module directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let dep_path = dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).with_context(|| {
            format!(
                "reading {}: the kernel module directory has no module index; run `depmod -b ROOT VERSION` \
                 or point `modules-dir` (or --modules-dir) at the right /lib/modules/VERSION",
                dep_path.display()
            )
        })?;
        let read_opt = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        Ok(Self::parse(dir, &dep, &read_opt("modules.builtin"), &read_opt("modules.alias"), &read_opt("modules.softdep")))
    }

    /// Build the index from the text of the index files.
    pub fn parse(dir: &Path, dep: &str, builtin: &str, alias: &str, softdep: &str) -> Self {
        let mut idx = ModuleIndex { dir: dir.to_path_buf(), ..Default::default() };
        for line in dep.lines() {
            let Some((module, rest)) = line.split_once(':') else { continue };
            let module = PathBuf::from(module.trim());
            let deps = rest.split_whitespace().map(|d| module_name(Path::new(d))).collect();
            idx.deps.insert(module_name(&module), (module, deps));
        }
        for line in builtin.lines().filter(|l| !l.trim().is_empty()) {
            idx.builtin.insert(module_name(Path::new(line.trim())));
        }
        for line in alias.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (w.next(), w.next(), w.next()) {
                // Hardware patterns (`pci:v0000...*`) are udev's business; we
                // only resolve plain names like `crypto-crc32c`.
                if !a.contains(['*', '?', '[']) {
                    idx.aliases.entry(a.to_string()).or_default().push(normalize(m));
                }
            }
        }
        for line in softdep.lines() {
            let mut w = line.split_whitespace();
            if let (Some("softdep"), Some(m)) = (w.next(), w.next()) {
                let names: Vec<String> = w.filter(|x| *x != "pre:" && *x != "post:").map(str::to_string).collect();
                idx.softdeps.entry(normalize(m)).or_default().extend(names);
            }
        }
        idx
    }

    /// The kernel version this directory is for (its last path component).
    pub fn version(&self) -> String {
        self.dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The file of a module (or of what an alias names), relative to the module directory.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.lookup(name).first().and_then(|m| self.deps.get(m)).map(|(f, _)| f.as_path())
    }

    /// Every module file of this kernel (for `modules = "all"`).
    pub fn all_names(&self) -> Vec<String> {
        self.deps.keys().cloned().collect()
    }

    /// Module names a name stands for: itself, or what an alias points to.
    fn lookup(&self, name: &str) -> Vec<String> {
        let n = normalize(name);
        if self.deps.contains_key(&n) {
            return vec![n];
        }
        self.aliases.get(name).cloned().unwrap_or_default()
    }

    /// The closure of `wanted` under hard dependencies and soft dependencies.
    pub fn closure<S: AsRef<str>>(&self, wanted: &[S]) -> ModuleSet {
        let mut set = ModuleSet::default();
        let mut todo: Vec<(String, bool)> = wanted.iter().map(|w| (w.as_ref().to_string(), true)).collect();
        let mut seen = BTreeSet::new();
        while let Some((name, asked)) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let found = self.lookup(&name);
            if found.is_empty() {
                if asked {
                    if self.is_builtin(&name) {
                        set.builtin.insert(normalize(&name));
                    } else {
                        set.unknown.insert(name);
                    }
                }
                continue;
            }
            for m in found {
                if !set.modules.insert(m.clone()) {
                    continue;
                }
                let (file, deps) = &self.deps[&m];
                set.files.insert(file.clone());
                todo.extend(deps.iter().map(|d| (d.clone(), false)));
                if let Some(soft) = self.softdeps.get(&m) {
                    todo.extend(soft.iter().map(|d| (d.clone(), false)));
                }
            }
        }
        set
    }
}

/// Firmware files the given modules name (`modinfo -F firmware`).
pub fn firmware_names(index: &ModuleIndex, set: &ModuleSet) -> Result<BTreeSet<String>> {
    if set.files.is_empty() {
        return Ok(BTreeSet::new());
    }
    let files: Vec<PathBuf> = set.files.iter().map(|f| index.dir.join(f)).collect();
    let mut out = BTreeSet::new();
    // modinfo takes many files at once; chunk to stay far below ARG_MAX.
    for chunk in files.chunks(500) {
        let text = Cmd::new("modinfo").args(["-F", "firmware"]).args(chunk).read()?;
        out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    Ok(out)
}

/// Names of the modules loaded in the running kernel (`/proc/modules`).
pub fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules").map(|t| t.lines().filter_map(|l| l.split_whitespace().next()).map(normalize).collect()).unwrap_or_default()
}
