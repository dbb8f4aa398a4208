//! The shape of the source tree: no chain of imports leads from a file of
//! `src/` back to itself ("layers point down").
//!
//! How a file's dependencies are read (a small Rust path reader, not a
//! compiler):
//! - every path that starts at `crate::`, `super::` or `self::`, or at the
//!   name of one of the file's own child modules, in `use` trees
//!   (`use crate::a::{b::C, d}`) and in code (`crate::a::f()`), counts;
//! - a path is followed module by module to the file that defines the
//!   module (`src/a/b.rs` or `src/a/b/mod.rs`); the first segment that is
//!   not a module file is an item of the file reached, unless that file
//!   re-exports it (`pub use x::Item`), in which case the path goes on to
//!   where the item really lives;
//! - a parent `mod.rs` and its children are files like the others: the
//!   declaration `mod child;` is ownership, not a dependency, and is not an
//!   arrow; a parent's code that calls into a child, or a child that uses
//!   `super::item` defined in the parent, is one;
//! - a circle that stays inside one module (its `mod.rs` and the files
//!   below it, such as `layout/mod.rs` <-> `layout/validate.rs`) is that
//!   module's own business and allowed: the module is one layer. A circle
//!   that leaves the module and comes back (`apply/wipe.rs` -> `needs.rs` ->
//!   ... -> `apply/mod.rs` -> `apply/wipe.rs`) is not: it ties two layers;
//! - a file's `#[cfg(test)]` modules, comments and string literals are left
//!   out: unit tests may reach anywhere;
//! - `src/main.rs` is a crate of its own (it uses `rescue::`) and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Tokens of a Rust source, without comments, strings and char literals.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == 'r' && (c.get(i + 1) == Some(&'"') || (c.get(i + 1) == Some(&'#') && matches!(c.get(i + 2), Some('"') | Some('#')))) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ch == '\'' {
            // A char literal ('x', '\n') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else if ch.is_whitespace() {
            i += 1;
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// The tokens without `#[cfg(test)]` items (the unit-test modules).
fn without_tests(t: Vec<Tok>) -> Vec<Tok> {
    let pat = [Tok::Punct('#'), Tok::Punct('['), Tok::Ident("cfg".into()), Tok::Punct('('), Tok::Ident("test".into()), Tok::Punct(')'), Tok::Punct(']')];
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i..].starts_with(&pat) {
            // Skip to the item's end: its block, or `;` before any block.
            let mut j = i + pat.len();
            while j < t.len() && t[j] != Tok::Punct('{') && t[j] != Tok::Punct(';') {
                j += 1;
            }
            if t.get(j) == Some(&Tok::Punct('{')) {
                let mut depth = 0;
                while j < t.len() {
                    match t[j] {
                        Tok::Punct('{') => depth += 1,
                        Tok::Punct('}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            i = j + 1;
            continue;
        }
        out.push(t[i].clone());
        i += 1;
    }
    out
}

/// The paths of a use tree or a path starting at `t[i]`, each a list of
/// segments (`self` as a last segment names the module itself).
fn path_tree(t: &[Tok], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        match t.get(i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if t.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match t.get(i) {
                        Some(Tok::Punct('}')) | None => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Ident(a)) if a == "as" => i += 2,
                        Some(Tok::Punct('*')) => {
                            out.push(path.clone());
                            i += 1;
                        }
                        _ => i = path_tree(t, i, path.clone(), out),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push(path);
                return i + 1;
            }
            _ => {
                if !path.is_empty() {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

struct Tree {
    /// Module path (`["backup", "location"]`) to its file.
    files: BTreeMap<Vec<String>, PathBuf>,
    /// For each file: the names it re-exports (`pub use`), as absolute paths.
    reexports: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>>,
    /// For each file: the absolute paths it refers to.
    refs: BTreeMap<PathBuf, Vec<Vec<String>>>,
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A path as written in module `m` made absolute; `None` when it leaves the crate.
fn absolute(files: &BTreeMap<Vec<String>, PathBuf>, m: &[String], p: &[String]) -> Option<Vec<String>> {
    let first = p.first()?;
    let mut base: Vec<String> = m.to_vec();
    let mut rest = p;
    match first.as_str() {
        "crate" => {
            base.clear();
            rest = &p[1..];
        }
        "self" => rest = &p[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        child => {
            let mut c = m.to_vec();
            c.push(child.to_string());
            if !files.contains_key(&c) {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

impl Tree {
    fn read(src: &Path) -> Tree {
        let mut paths = Vec::new();
        rust_files(src, &mut paths);
        paths.retain(|p| p != &src.join("main.rs"));
        let files: BTreeMap<Vec<String>, PathBuf> = paths.iter().map(|p| (module_of(src, p), p.clone())).collect();
        let mut reexports = BTreeMap::new();
        let mut refs = BTreeMap::new();
        for (m, file) in &files {
            let t = without_tests(tokens(&std::fs::read_to_string(file).expect("read source")));
            let mut mine = Vec::new();
            let mut re = BTreeMap::new();
            let mut i = 0;
            while i < t.len() {
                let starts_path = matches!(&t[i], Tok::Ident(_)) && t.get(i + 1) == Some(&Tok::PathSep) && (i == 0 || t[i - 1] != Tok::PathSep);
                if !starts_path {
                    i += 1;
                    continue;
                }
                let is_pub_use = i >= 2 && t[i - 1] == Tok::Ident("use".into()) && t[i - 2] == Tok::Ident("pub".into());
                let mut found = Vec::new();
                let end = path_tree(&t, i, Vec::new(), &mut found);
                for p in found {
                    let Some(abs) = absolute(&files, m, &p) else { continue };
                    if is_pub_use {
                        if let Some(name) = p.last().filter(|n| *n != "self") {
                            re.insert(name.clone(), abs.clone());
                        }
                    }
                    mine.push(abs);
                }
                i = end.max(i + 1);
            }
            reexports.insert(file.clone(), re);
            refs.insert(file.clone(), mine);
        }
        Tree { files, reexports, refs }
    }

    /// The file an absolute path lands in, following re-exports.
    fn resolve(&self, p: &[String], depth: usize) -> Option<PathBuf> {
        let mut module: Vec<String> = Vec::new();
        for (k, seg) in p.iter().enumerate() {
            if seg == "self" {
                break;
            }
            let mut next = module.clone();
            next.push(seg.clone());
            if self.files.contains_key(&next) {
                module = next;
                continue;
            }
            let file = self.files.get(&module)?;
            if depth < 8 {
                if let Some(target) = self.reexports.get(file).and_then(|r| r.get(seg)) {
                    let mut whole = target.clone();
                    whole.extend(p[k + 1..].iter().cloned());
                    if whole != p {
                        return self.resolve(&whole, depth + 1);
                    }
                }
            }
            return Some(file.clone());
        }
        self.files.get(&module).cloned()
    }

    fn graph(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (file, refs) in &self.refs {
            let to = g.entry(file.clone()).or_default();
            for r in refs {
                if let Some(target) = self.resolve(r, 0).filter(|t| t != file) {
                    to.insert(target);
                }
            }
        }
        g
    }
}

/// The shortest circle through `start` in `g`, as the files along it (first = last).
fn shortest_cycle(g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>, start: &PathBuf) -> Option<Vec<PathBuf>> {
    let mut prev: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(n) = queue.pop_front() {
        for m in g.get(&n).into_iter().flatten() {
            if m == start {
                let mut path = vec![n.clone()];
                while let Some(p) = prev.get(path.last().expect("non-empty")) {
                    path.push(p.clone());
                }
                path.reverse();
                path.push(start.clone());
                return Some(path);
            }
            if !prev.contains_key(m) && m != start {
                prev.insert(m.clone(), n.clone());
                queue.push_back(m.clone());
            }
        }
    }
    None
}

/// A circle of `g` that leaves the module it starts in, if there is one.
fn find_cycle(src: &Path, g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    let inside_one_module = |c: &[PathBuf]| {
        let first = module_of(src, &c[0]);
        first.first().is_some_and(|top| c.iter().all(|f| module_of(src, f).first() == Some(top)))
    };
    g.keys().filter_map(|n| shortest_cycle(g, n)).find(|c| !inside_one_module(c))
}

/// What file `from` takes from file `to`, for the message.
fn names_used(tree: &Tree, from: &Path, to: &Path) -> String {
    let mut names = BTreeSet::new();
    for r in &tree.refs[from] {
        if tree.resolve(r, 0).as_deref() == Some(to) {
            names.insert(r.join("::"));
        }
    }
    names.into_iter().take(4).collect::<Vec<_>>().join(", ")
}

#[test]
fn no_chain_of_imports_leads_from_a_file_back_to_itself() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::read(&src);
    let g = tree.graph();
    assert!(g.len() > 50, "the reader found only {} files under {}", g.len(), src.display());
    if let Some(c) = find_cycle(&src, &g) {
        let rel = |p: &Path| p.strip_prefix(&src).unwrap_or(p).display().to_string();
        let steps: Vec<String> = c.windows(2).map(|w| format!("  src/{} -> src/{}  ({})", rel(&w[0]), rel(&w[1]), names_used(&tree, &w[0], &w[1]))).collect();
        panic!("the imports of src/ form a circle (a lower module must not import a higher one):\n{}", steps.join("\n"));
    }
}

/// The workflows ask `backup::Backend` and never which method it is: no
/// workflow names `backup.method` or reaches into a method's module.
#[test]
fn the_workflows_never_branch_on_the_backup_method() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::read(&src);
    let methods = [src.join("backup/archives.rs"), src.join("backup/rsync.rs"), src.join("backup/bacula")];
    let mut found = Vec::new();
    for (file, refs) in tree.refs.iter().filter(|(f, _)| f.starts_with(src.join("workflow"))) {
        for r in refs {
            if let Some(target) = tree.resolve(r, 0).filter(|t| methods.iter().any(|m| t.starts_with(m))) {
                found.push(format!("{} uses {} ({})", file.display(), r.join("::"), target.display()));
            }
        }
        let t = without_tests(tokens(&std::fs::read_to_string(file).expect("read source")));
        for w in t.windows(3) {
            let named = |i: usize, s: &str| w[i] == Tok::Ident(s.into());
            let asked = if named(0, "BackupMethod") {
                "BackupMethod"
            } else if named(0, "is_server") {
                "is_server()"
            } else if named(0, "backup") && w[1] == Tok::Punct('.') && named(2, "method") {
                "backup.method"
            } else {
                continue;
            };
            found.push(format!("{} asks which backup method it is ({asked})", file.display()));
        }
    }
    assert!(found.is_empty(), "a workflow forks on the backup method instead of asking backup::Backend:\n  {}", found.join("\n  "));
}

#[test]
fn the_reader_sees_uses_code_paths_super_and_reexports() {
    let t = without_tests(tokens(
        "use crate::a::{b::{self, C}, d as e};\n// crate::nope\nfn f() { let s = \"crate::nope\"; super::g(); crate::x::y(); child::h(); }\n#[cfg(test)]\nmod tests { use crate::z; }",
    ));
    let mut paths = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if matches!(&t[i], Tok::Ident(_)) && t.get(i + 1) == Some(&Tok::PathSep) && (i == 0 || t[i - 1] != Tok::PathSep) {
            i = path_tree(&t, i, Vec::new(), &mut paths);
        } else {
            i += 1;
        }
    }
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["crate::a::b::self", "crate::a::b::C", "crate::a::d", "super::g", "crate::x::y", "child::h"]);
    let src = Path::new("/src");
    let g = |edges: &[(&str, &str)]| {
        edges.iter().fold(BTreeMap::new(), |mut g: BTreeMap<PathBuf, BTreeSet<PathBuf>>, (x, y)| {
            g.entry(src.join(x)).or_default().insert(src.join(y));
            g
        })
    };
    let c = find_cycle(src, &g(&[("a.rs", "b.rs"), ("b.rs", "c/mod.rs"), ("c/mod.rs", "a.rs"), ("c/mod.rs", "d.rs")])).expect("a circle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    // Inside one module: allowed; through a file outside it: a circle.
    assert_eq!(find_cycle(src, &g(&[("c/mod.rs", "c/x.rs"), ("c/x.rs", "c/mod.rs")])), None);
    assert!(find_cycle(src, &g(&[("c/mod.rs", "c/x.rs"), ("c/x.rs", "d.rs"), ("d.rs", "c/mod.rs")])).is_some());
}
