//! The recovered system's network config, rewritten for the NICs of this
//! machine: each recorded NIC's old name and MAC become the new ones in
//! ifupdown `/etc/network/interfaces` (+ `interfaces.d`), systemd-networkd
//! `.network`/`.netdev`/`.link` files, NetworkManager keyfiles, netplan YAML
//! and udev rules (persistent-net).
//!
//! Each format is read line by line, and a name or MAC is replaced only where
//! the format puts an interface name (`iface`, `bond-slaves`, `[Match]
//! Name=`, `interface-name=`, `set-name:`...) or a MAC that *selects* a NIC
//! (`[Match] MACAddress=`, `mac-address=`, `match: macaddress:`, udev's
//! `ATTR{address}`). A MAC the config *sets* (`hwaddress`, `cloned-mac-address`,
//! `[Link] MACAddress=`) is kept. When an old name or MAC appears anywhere
//! else, the file is left exactly as it was and the report says where: a
//! guess in a file we do not understand could take the server off the net.
//!
//! The rewrite of one text is a pure function; [`plan`] reads the files of a
//! tree and [`apply`] writes them, both through a directory fd that no path
//! (`..`, a symlink) can leave.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::Serialize;

pub use crate::plan::nics::NicRename;

/// The config formats this module rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Ifupdown,
    Networkd,
    NetworkManager,
    Netplan,
    UdevRules,
}

/// Where the files of each format are, relative to the root, and which
/// names in those directories are config files.
const LOCATIONS: &[(Format, &str, &[&str])] = &[
    (Format::Ifupdown, "etc/network", &["interfaces"]),
    (Format::Ifupdown, "etc/network/interfaces.d", &[""]),
    (Format::Networkd, "etc/systemd/network", &[".network", ".netdev", ".link"]),
    (Format::NetworkManager, "etc/NetworkManager/system-connections", &[".nmconnection"]),
    (Format::Netplan, "etc/netplan", &[".yaml", ".yml"]),
    (Format::UdevRules, "etc/udev/rules.d", &[".rules"]),
];

/// What became of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It mentions no recorded NIC that changed.
    Unchanged,
    /// The new text and the replacements made (`ens3 -> enp1s0`).
    Rewritten { text: String, changes: Vec<String> },
    /// Left as it was, and why.
    Left(String),
}

/// How a part of a line is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Interface names here are rewritten.
    Names,
    /// MACs that select a NIC are rewritten.
    Macs,
    /// Both (a udev rule).
    Both,
    /// A MAC the config sets on an interface: kept.
    Kept,
    /// Anything else: an old name or MAC here makes the file unsafe.
    Other,
}

/// The replacements to make, and what was made.
struct Replacer {
    names: BTreeMap<String, String>,
    macs: BTreeMap<String, String>,
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The MAC starting at `i` of `s`, if one stands there alone.
fn mac_at(s: &[u8], i: usize) -> Option<&[u8]> {
    let m = s.get(i..i + 17)?;
    let shape = m.iter().enumerate().all(|(k, c)| if k % 3 == 2 { *c == b':' } else { c.is_ascii_hexdigit() });
    let alone = |c: Option<&u8>| c.is_none_or(|c| !c.is_ascii_hexdigit() && *c != b':');
    (shape && (i == 0 || alone(s.get(i - 1))) && alone(s.get(i + 17))).then_some(m)
}

impl Replacer {
    fn new(renames: &[NicRename]) -> Replacer {
        let mut names = BTreeMap::new();
        let mut macs = BTreeMap::new();
        for r in renames {
            if r.old_name != r.new_name {
                names.insert(r.old_name.clone(), r.new_name.clone());
            }
            if let (Some(o), Some(n)) = (&r.old_mac, &r.new_mac) {
                if !o.eq_ignore_ascii_case(n) {
                    macs.insert(o.to_ascii_lowercase(), n.to_ascii_lowercase());
                }
            }
        }
        Replacer { names, macs }
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.macs.is_empty()
    }

    /// `part` with names and/or MACs replaced (in one pass, so swapped names
    /// stay swapped); `found` collects the old names and MACs that stand in
    /// `part` but were not to be replaced here.
    fn replace(&self, part: &str, names: bool, macs: bool, changes: &mut BTreeSet<String>, found: &mut Vec<String>) -> String {
        let b = part.as_bytes();
        let mut out = String::with_capacity(part.len());
        let mut i = 0;
        let mut start = 0;
        while i < b.len() {
            if let Some(m) = mac_at(b, i) {
                let text = String::from_utf8_lossy(m).into_owned();
                if let Some(new) = self.macs.get(&text.to_ascii_lowercase()) {
                    if macs {
                        out.push_str(&part[start..i]);
                        // Keep the file's case: NetworkManager writes upper case.
                        out.push_str(&if text.bytes().any(|c| c.is_ascii_uppercase()) { new.to_ascii_uppercase() } else { new.clone() });
                        changes.insert(format!("{text} -> {new}"));
                        start = i + 17;
                    } else {
                        found.push(text);
                    }
                }
                i += 17;
                continue;
            }
            if is_name_char(b[i]) {
                let end = (i..b.len()).find(|&k| !is_name_char(b[k])).unwrap_or(b.len());
                let word = &part[i..end];
                if let Some(new) = self.names.get(word) {
                    if names {
                        out.push_str(&part[start..i]);
                        out.push_str(new);
                        changes.insert(format!("{word} -> {new}"));
                        start = end;
                    } else {
                        found.push(word.to_string());
                    }
                }
                i = end;
                continue;
            }
            i += 1;
        }
        out.push_str(&part[start..]);
        out
    }
}

/// A line split into a head and a value, each with its treatment; `None`
/// for a comment or blank line.
type Split = Option<(usize, Place, Place)>;

fn is_comment(t: &str) -> bool {
    t.is_empty() || t.starts_with('#')
}

/// ifupdown: the first word says what the rest is.
fn ifupdown_line(line: &str) -> Split {
    let t = line.trim_start();
    if is_comment(t) {
        return None;
    }
    let key = t.split_whitespace().next().unwrap_or("");
    let split = line.len() - t.len() + key.len();
    let value = match key {
        "iface" | "auto" | "mapping" | "rename" => Place::Names,
        k if k.starts_with("allow-") => Place::Names,
        "bond-slaves" | "bond_slaves" | "slaves" | "bond-primary" | "bond_primary" | "bond-active-slave" | "bridge-ports" | "bridge_ports"
        | "vlan-raw-device" | "vlan_raw_device" | "up" | "down" | "pre-up" | "post-up" | "pre-down" | "post-down" => Place::Names,
        "hwaddress" | "hwaddr" => Place::Kept,
        _ => Place::Other,
    };
    Some((split, Place::Other, value))
}

/// `KEY=VALUE` of an INI-like file (networkd units, NM keyfiles) in `section`.
fn ini_line(line: &str, section: &mut String, place: fn(&str, &str) -> Place) -> Split {
    let t = line.trim_start();
    if is_comment(t) || t.starts_with(';') {
        return None;
    }
    if let Some(s) = t.strip_prefix('[') {
        *section = s.trim_end().trim_end_matches(']').to_string();
        return None;
    }
    let Some(eq) = line.find('=') else { return Some((line.len(), Place::Other, Place::Other)) };
    Some((eq + 1, Place::Other, place(section, line[..eq].trim())))
}

fn networkd_place(section: &str, key: &str) -> Place {
    match (section, key) {
        ("Match", "Name" | "OriginalName") | ("Link", "Name") | ("NetDev", "Name") => Place::Names,
        ("Network", "Bond" | "Bridge" | "VLAN" | "MACVLAN" | "IPVLAN" | "VXLAN" | "Tunnel" | "BindCarrier" | "VRF") => Place::Names,
        ("Match", "MACAddress" | "PermanentMACAddress") => Place::Macs,
        ("Link" | "NetDev", "MACAddress") => Place::Kept,
        _ => Place::Other,
    }
}

fn nm_place(section: &str, key: &str) -> Place {
    match (section, key) {
        ("connection", "interface-name" | "id" | "master" | "controller") | ("vlan", "parent") | ("match", "interface-name") => Place::Names,
        ("ethernet" | "802-3-ethernet", "mac-address") => Place::Macs,
        ("ethernet" | "802-3-ethernet", "cloned-mac-address") => Place::Kept,
        _ => Place::Other,
    }
}

/// netplan: the YAML keys of the line's ancestors decide. `stack` holds
/// (indent, key) of the open mappings.
fn netplan_line(line: &str, stack: &mut Vec<(usize, String)>) -> Split {
    let t = line.trim_start();
    if is_comment(t) {
        return None;
    }
    let indent = line.len() - t.len();
    while stack.last().is_some_and(|(i, _)| *i >= indent) {
        stack.pop();
    }
    let parent = stack.last().map(|(_, k)| k.clone()).unwrap_or_default();
    if t.starts_with("- ") || t == "-" {
        let place = if parent == "interfaces" { Place::Names } else { Place::Other };
        return Some((indent, Place::Other, place));
    }
    let Some(colon) = t.find(':') else { return Some((line.len(), Place::Other, Place::Other)) };
    let key = t[..colon].trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let head = if matches!(parent.as_str(), "ethernets" | "bonds" | "vlans" | "bridges") { Place::Names } else { Place::Other };
    let value = match key.as_str() {
        "macaddress" if parent == "match" => Place::Macs,
        "macaddress" => Place::Kept,
        "set-name" | "link" | "interfaces" => Place::Names,
        "name" if parent == "match" => Place::Names,
        _ => Place::Other,
    };
    stack.push((indent, key));
    Some((indent + colon + 1, head, value))
}

/// The whole rule line is match and assignment keys on names and MACs.
fn udev_line(line: &str) -> Split {
    (!is_comment(line.trim_start())).then_some((0, Place::Other, Place::Both))
}

/// Why a networkd or NM file cannot follow the NICs by rewriting names and MACs.
fn matches_by_hardware(format: Format, text: &str) -> Option<String> {
    let keys: &[&str] = match format {
        Format::Networkd => &["Path=", "Driver="],
        Format::NetworkManager => &["path="],
        _ => &[],
    };
    text.lines()
        .map(str::trim_start)
        .find(|l| keys.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("it selects interfaces by `{l}` (hardware path or driver), which rescue does not rewrite; check it matches this machine's NICs"))
}

/// Rewrite one config text of `format` for `renames`.
pub fn rewrite(format: Format, text: &str, renames: &[NicRename]) -> Outcome {
    let r = Replacer::new(renames);
    if r.is_empty() {
        return Outcome::Unchanged;
    }
    let mut section = String::new();
    let mut stack = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut changes = BTreeSet::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let split = match format {
            Format::Ifupdown => ifupdown_line(body),
            Format::Networkd => ini_line(body, &mut section, networkd_place),
            Format::NetworkManager => ini_line(body, &mut section, nm_place),
            Format::Netplan => netplan_line(body, &mut stack),
            Format::UdevRules => udev_line(body),
        };
        let Some((at, head, value)) = split else {
            out.push_str(line);
            continue;
        };
        let mut found = Vec::new();
        let mut part = |s: &str, p: Place| {
            let (names, macs) = match p {
                Place::Names => (true, false),
                Place::Macs => (false, true),
                Place::Both => (true, true),
                Place::Kept | Place::Other => (false, false),
            };
            let mut unsafe_here = Vec::new();
            let new = r.replace(s, names, macs, &mut changes, &mut unsafe_here);
            // A MAC the config sets is kept on purpose; anything else unknown is not safe.
            let kept_mac = |w: &String| p == Place::Kept && mac_at(w.as_bytes(), 0).is_some();
            found.extend(unsafe_here.into_iter().filter(|w| !kept_mac(w)));
            new
        };
        let a = part(&body[..at], head);
        let b = part(&body[at..], value);
        if let Some(w) = found.first() {
            return Outcome::Left(format!("line {}: `{}` mentions {w} where rescue does not know how to rewrite it", n + 1, body.trim()));
        }
        out.push_str(&a);
        out.push_str(&b);
        out.push_str(&line[body.len()..]);
    }
    if changes.is_empty() {
        return Outcome::Unchanged;
    }
    if let Some(why) = matches_by_hardware(format, text) {
        return Outcome::Left(why);
    }
    Outcome::Rewritten { text: out, changes: changes.into_iter().collect() }
}

/// What finalize does with one file of the recovered system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileRewrite {
    /// Path in the recovered system (`/etc/network/interfaces`).
    pub path: String,
    pub format: Format,
    pub changes: Vec<String>,
    #[serde(skip)]
    pub text: String,
}

/// The rewrites of a tree, and the files left as they were (path, why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkRewrite {
    pub rewritten: Vec<FileRewrite>,
    pub left: Vec<(String, String)>,
}

/// A directory of the recovered system, opened so that nothing below it
/// (no `..`, no symlink, absolute or relative) leads out of the root.
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

impl RootDir {
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd = rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("opening the recovered system's root {}", path.display()))?;
        Ok(RootDir { fd, path: path.to_path_buf() })
    }

    fn open_beneath(&self, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat2(&self.fd, rel, flags | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty(), BENEATH)
    }

    /// Regular files and symlinks in directory `rel` (sorted, with the link's
    /// target); none when it is absent or not a plain directory.
    fn list(&self, rel: &str) -> Vec<(String, Option<String>)> {
        use rustix::fs::FileType;
        let Ok(dir) = self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY) else { return Vec::new() };
        let Ok(entries) = rustix::fs::Dir::read_from(&dir) else { return Vec::new() };
        let mut out: Vec<(String, Option<String>)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| matches!(e.file_type(), FileType::RegularFile | FileType::Symlink))
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let link = (e.file_type() == FileType::Symlink)
                    .then(|| rustix::fs::readlinkat(&dir, e.file_name(), Vec::new()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default());
                (name, link)
            })
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        out.sort();
        out
    }

    /// A regular file's text; `Err` says why it cannot be read (a symlink, not UTF-8).
    fn read(&self, rel: &str) -> std::result::Result<String, String> {
        let fd = self.open_beneath(rel, OFlags::RDONLY).map_err(|e| format!("cannot be opened as a plain file inside the recovered system ({e})"))?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).map_err(|e| format!("cannot be read as text ({e})"))?;
        Ok(s)
    }

    /// Replace `rel` with `text`, keeping its mode and owner: a new file in
    /// the same directory, synced, renamed over it.
    fn replace(&self, rel: &str, text: &str) -> Result<()> {
        let shown = self.path.join(rel);
        let (dir_rel, name) = rel.rsplit_once('/').unwrap_or((".", rel));
        let dir = self.open_beneath(dir_rel, OFlags::DIRECTORY | OFlags::RDONLY).with_context(|| format!("opening the directory of {}", shown.display()))?;
        let old = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).with_context(|| format!("reading the mode of {}", shown.display()))?;
        let tmp = format!(".{name}.rescue-new");
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        let mode = Mode::from_raw_mode(old.st_mode & 0o7777);
        let fd = rustix::fs::openat(&dir, tmp.as_str(), OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode)
            .with_context(|| format!("creating a new {} beside the old one", shown.display()))?;
        let mut f = std::fs::File::from(fd);
        let written = (|| -> Result<()> {
            f.write_all(text.as_bytes())?;
            rustix::fs::fchmod(&f, mode)?;
            rustix::fs::fchown(&f, Some(rustix::fs::Uid::from_raw(old.st_uid)), Some(rustix::fs::Gid::from_raw(old.st_gid)))?;
            f.sync_all()?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        }
        written.with_context(|| format!("writing the rewritten {}", shown.display()))
    }
}

/// Read every network config file of the tree and compute its rewrite. No writes.
pub fn plan(root: &RootDir, renames: &[NicRename]) -> NetworkRewrite {
    let mut out = NetworkRewrite::default();
    for (format, dir, names) in LOCATIONS {
        for (file, link) in root.list(dir) {
            let wanted = names.iter().any(|n| if *n == "interfaces" { file == *n } else { file.ends_with(n) });
            if !wanted {
                continue;
            }
            let rel = format!("{dir}/{file}");
            match link.as_deref() {
                // systemd's way to mask a unit: nothing to rewrite.
                Some("/dev/null") => continue,
                Some(target) => {
                    out.left.push((
                        format!("/{rel}"),
                        format!("it is a symbolic link to {target}, which rescue does not follow; rewrite the file it points to by hand"),
                    ));
                    continue;
                }
                None => {}
            }
            let text = match root.read(&rel) {
                Ok(t) => t,
                Err(why) => {
                    out.left.push((format!("/{rel}"), why));
                    continue;
                }
            };
            match rewrite(*format, &text, renames) {
                Outcome::Unchanged => {}
                Outcome::Rewritten { text, changes } => out.rewritten.push(FileRewrite { path: format!("/{rel}"), format: *format, changes, text }),
                Outcome::Left(why) => out.left.push((format!("/{rel}"), why)),
            }
        }
    }
    out
}

/// Write the planned rewrites.
pub fn apply(root: &RootDir, planned: &NetworkRewrite) -> Result<()> {
    for f in &planned.rewritten {
        root.replace(f.path.trim_start_matches('/'), &f.text)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn renames() -> Vec<NicRename> {
        let r = |o: &str, n: &str, om: &str, nm: &str| NicRename { old_name: o.into(), new_name: n.into(), old_mac: Some(om.into()), new_mac: Some(nm.into()) };
        vec![r("ens3", "enp0s3", "52:54:00:12:34:01", "52:54:00:ab:cd:01"), r("ens4", "enp0s4", "52:54:00:12:34:02", "52:54:00:ab:cd:02")]
    }

    fn rewritten(format: Format, text: &str) -> (String, Vec<String>) {
        match rewrite(format, text, &renames()) {
            Outcome::Rewritten { text, changes } => (text, changes),
            o => panic!("not rewritten: {o:?}"),
        }
    }

    #[test]
    fn ifupdown_bond_and_vlan() {
        let text = "# ens3 is the first port\nauto lo\niface lo inet loopback\n\nallow-hotplug ens3\niface ens3 inet manual\n    bond-master bond0\n\nauto bond0\niface bond0 inet manual\n    bond-slaves ens3 ens4\n    bond-primary ens3\n    hwaddress ether 52:54:00:12:34:01\n\nauto bond0.100\niface bond0.100 inet static\n    address 192.0.2.10/24\n    vlan-raw-device bond0\n\nauto ens4.200\niface ens4.200 inet static\n    address 198.51.100.10/24\n    post-up ip link set ens4.200 mtu 1400\n";
        let (got, changes) = rewritten(Format::Ifupdown, text);
        let want = text
            .replace("allow-hotplug ens3", "allow-hotplug enp0s3")
            .replace("iface ens3 inet", "iface enp0s3 inet")
            .replace("bond-slaves ens3 ens4", "bond-slaves enp0s3 enp0s4")
            .replace("bond-primary ens3", "bond-primary enp0s3")
            .replace("ens4.200", "enp0s4.200");
        assert_eq!(got, want, "the comment and the MAC the bond sets are kept");
        assert_eq!(changes, ["ens3 -> enp0s3", "ens4 -> enp0s4"]);
    }

    #[test]
    fn networkd_units() {
        let link = "[Match]\nMACAddress=52:54:00:12:34:01\n\n[Link]\nName=lan0\n";
        assert_eq!(rewritten(Format::Networkd, link).0, "[Match]\nMACAddress=52:54:00:ab:cd:01\n\n[Link]\nName=lan0\n");
        let member = "[Match]\nName=ens3 ens4\n\n[Network]\nBond=bond0\n";
        assert_eq!(rewritten(Format::Networkd, member).0, "[Match]\nName=enp0s3 enp0s4\n\n[Network]\nBond=bond0\n");
        let bond_netdev = "[NetDev]\nName=bond0\nKind=bond\nMACAddress=52:54:00:12:34:01\n\n[Bond]\nMode=active-backup\nPrimarySlave=ens3\n";
        let left = rewrite(Format::Networkd, bond_netdev, &renames());
        assert!(matches!(&left, Outcome::Left(w) if w.contains("line 8") && w.contains("PrimarySlave=ens3")), "{left:?}");
        let vlan_on_nic = "[Match]\nName=ens3\n\n[Network]\nVLAN=ens3.100\n";
        assert_eq!(rewritten(Format::Networkd, vlan_on_nic).0, "[Match]\nName=enp0s3\n\n[Network]\nVLAN=enp0s3.100\n");
        let by_path = "[Match]\nName=ens3\nPath=pci-0000:00:03.0\n";
        assert!(matches!(rewrite(Format::Networkd, by_path, &renames()), Outcome::Left(w) if w.contains("Path=pci-0000:00:03.0")));
        assert_eq!(rewrite(Format::Networkd, "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n", &renames()), Outcome::Unchanged);
    }

    #[test]
    fn networkmanager_keyfiles() {
        let port = "[connection]\nid=bond0-port-ens3\nuuid=5b1c1f7e-0000-4000-8000-000000000001\ntype=ethernet\ninterface-name=ens3\nmaster=bond0\nslave-type=bond\n\n[ethernet]\nmac-address=52:54:00:12:34:01\ncloned-mac-address=52:54:00:12:34:01\n";
        let (got, _) = rewritten(Format::NetworkManager, port);
        assert_eq!(
            got,
            // `bond0-port-ens3` is one word, a label: not a name.
            port.replace("interface-name=ens3", "interface-name=enp0s3").replace("mac-address=52:54:00:12:34:01\nc", "mac-address=52:54:00:ab:cd:01\nc")
        );
        let upper = "[ethernet]\nmac-address=52:54:00:12:34:0A\n";
        let r = [NicRename {
            old_name: "ens5".into(),
            new_name: "ens5".into(),
            old_mac: Some("52:54:00:12:34:0a".into()),
            new_mac: Some("52:54:00:ab:cd:0b".into()),
        }];
        assert!(
            matches!(rewrite(Format::NetworkManager, upper, &r), Outcome::Rewritten { text, .. } if text == "[ethernet]\nmac-address=52:54:00:AB:CD:0B\n"),
            "NM's upper case is kept"
        );
        let vlan = "[connection]\nid=vlan100\ntype=vlan\ninterface-name=ens4.100\n\n[vlan]\nid=100\nparent=ens4\n";
        assert_eq!(
            rewritten(Format::NetworkManager, vlan).0,
            "[connection]\nid=vlan100\ntype=vlan\ninterface-name=enp0s4.100\n\n[vlan]\nid=100\nparent=enp0s4\n"
        );
    }

    #[test]
    fn netplan_bond_vlan_and_set_name() {
        let text = "network:\n  version: 2\n  ethernets:\n    ens3:\n      match:\n        macaddress: \"52:54:00:12:34:01\"\n      set-name: ens3\n    ens4:\n      match:\n        macaddress: 52:54:00:12:34:02\n  bonds:\n    bond0:\n      interfaces: [ens3, ens4]\n      macaddress: 52:54:00:12:34:01\n      parameters:\n        mode: active-backup\n        primary: ens3\n  vlans:\n    vlan100:\n      id: 100\n      link: bond0\n      addresses: [192.0.2.10/24]\n";
        let left = rewrite(Format::Netplan, text, &renames());
        assert!(matches!(&left, Outcome::Left(w) if w.contains("primary: ens3")), "a key rescue does not know: {left:?}");
        let text = text.replace("        primary: ens3\n", "");
        let (got, _) = rewritten(Format::Netplan, &text);
        let want = text
            .replace("    ens3:\n", "    enp0s3:\n")
            .replace("    ens4:\n", "    enp0s4:\n")
            .replace("\"52:54:00:12:34:01\"", "\"52:54:00:ab:cd:01\"")
            .replace("macaddress: 52:54:00:12:34:02", "macaddress: 52:54:00:ab:cd:02")
            .replace("set-name: ens3", "set-name: enp0s3")
            .replace("[ens3, ens4]", "[enp0s3, enp0s4]");
        assert_eq!(got, want, "the bond's own macaddress is kept");
        let block = "network:\n  bonds:\n    bond0:\n      interfaces:\n        - ens3\n        - ens4\n";
        assert_eq!(rewritten(Format::Netplan, block).0, block.replace("- ens3", "- enp0s3").replace("- ens4", "- enp0s4"));
    }

    #[test]
    fn udev_persistent_net_rules() {
        let text = "# PCI device 0x1af4:0x1000 (virtio-pci)\nSUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:01\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"ens3\"\n";
        let (got, changes) = rewritten(Format::UdevRules, text);
        assert_eq!(got, text.replace("52:54:00:12:34:01", "52:54:00:ab:cd:01").replace("NAME=\"ens3\"", "NAME=\"enp0s3\""));
        assert_eq!(changes, ["52:54:00:12:34:01 -> 52:54:00:ab:cd:01", "ens3 -> enp0s3"]);
    }

    #[test]
    fn swapped_names_stay_swapped_and_words_stay_whole() {
        let swap = vec![
            NicRename { old_name: "eth0".into(), new_name: "eth1".into(), old_mac: None, new_mac: None },
            NicRename { old_name: "eth1".into(), new_name: "eth0".into(), old_mac: None, new_mac: None },
        ];
        let text = "auto eth0 eth1 veth0 eth10\niface eth0 inet dhcp\n";
        assert_eq!(
            rewrite(Format::Ifupdown, text, &swap),
            Outcome::Rewritten {
                text: "auto eth1 eth0 veth0 eth10\niface eth1 inet dhcp\n".into(),
                changes: vec!["eth0 -> eth1".into(), "eth1 -> eth0".into()]
            }
        );
        assert_eq!(rewrite(Format::Ifupdown, text, &[]), Outcome::Unchanged);
    }

    #[test]
    fn a_tree_is_rewritten_in_place_and_nothing_outside_is_touched() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("etc/network/interfaces", "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n");
        put("etc/network/interfaces.d/bond0", "auto bond0\niface bond0 inet manual\n    bond-slaves ens3 ens4\n");
        put("etc/NetworkManager/system-connections/ens3.nmconnection", "[connection]\nid=ens3\ninterface-name=ens3\n");
        put("etc/systemd/network/10-odd.network", "[Match]\nName=ens3\n\n[Network]\nDescription=uplink on ens4\n");
        std::fs::set_permissions(root.join("etc/NetworkManager/system-connections/ens3.nmconnection"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // A symlink out of the tree is neither followed nor written.
        std::fs::write(d.path().join("outside.yaml"), "network:\n  ethernets:\n    ens3: {}\n").unwrap();
        std::fs::create_dir_all(root.join("etc/netplan")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.yaml"), root.join("etc/netplan/50.yaml")).unwrap();

        let rd = RootDir::open(&root).unwrap();
        let planned = plan(&rd, &renames());
        let paths: Vec<&str> = planned.rewritten.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/etc/network/interfaces.d/bond0", "/etc/NetworkManager/system-connections/ens3.nmconnection"]);
        std::os::unix::fs::symlink("/dev/null", root.join("etc/systemd/network/99-default.link")).unwrap();
        let planned = plan(&rd, &renames());
        let left: Vec<&str> = planned.left.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(left, ["/etc/systemd/network/10-odd.network", "/etc/netplan/50.yaml"], "a link to /dev/null (a masked unit) is not reported");
        assert!(planned.left[0].1.contains("Description=uplink on ens4"), "{:?}", planned.left);
        assert!(planned.left[1].1.contains("symbolic link to"), "{:?}", planned.left);
        apply(&rd, &planned).unwrap();
        let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
        assert_eq!(read("etc/network/interfaces.d/bond0"), "auto bond0\niface bond0 inet manual\n    bond-slaves enp0s3 enp0s4\n");
        assert_eq!(read("etc/NetworkManager/system-connections/ens3.nmconnection"), "[connection]\nid=enp0s3\ninterface-name=enp0s3\n");
        let mode = std::fs::metadata(root.join("etc/NetworkManager/system-connections/ens3.nmconnection")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "NetworkManager ignores keyfiles others can read: the mode is kept");
        assert_eq!(read("etc/systemd/network/10-odd.network"), "[Match]\nName=ens3\n\n[Network]\nDescription=uplink on ens4\n");
        assert_eq!(std::fs::read_to_string(d.path().join("outside.yaml")).unwrap(), "network:\n  ethernets:\n    ens3: {}\n");
        assert!(std::fs::read_dir(root.join("etc/network/interfaces.d")).unwrap().count() == 1, "no temporary file is left");
    }
}
