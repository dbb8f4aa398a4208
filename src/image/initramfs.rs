//! The rescue system's initramfs: which programs, libraries, modules,
//! firmware and settings go in, the secret filter, and the compressed cpio.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::config::{ModulesPolicy, NetworkMode};
use super::elf::LibResolver;
use super::manifest::Manifest;
use super::modules::{self, ModuleIndex};
use super::tree::{Entry, Source, Tree};
use crate::cmd::{find_program, shell_quote};
use crate::config::Config;
use crate::layout::Layout;
use crate::needs::{self, Missing, Needs, Runs};

const INIT: &str = include_str!("init.sh");
const UDHCPC_SCRIPT: &str = include_str!("udhcpc.sh");

/// Where the descriptor and the config are in the rescue system.
pub const IMAGE_LAYOUT: &str = "/etc/rescue/layout.toml";
pub const IMAGE_CONFIG: &str = "/etc/rescue/rescue.toml";

/// What an initramfs is made from.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub layout: &'a Layout,
    /// The descriptor file as saved (copied verbatim).
    pub layout_path: PathBuf,
    /// The module directory of the kernel that will boot (`.../lib/modules/VERSION`).
    pub modules_dir: PathBuf,
    /// The `rescue` executable to put in.
    pub rescue_binary: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Accounts {
    Users,
    Groups,
}

/// The image's own `/etc/passwd` or `/etc/group` lines, then this system's
/// names that the image lacks (neither the name nor the id taken), locked:
/// no password, no shell, no members. Restores that set ACLs from their text
/// form need the names: a Bacula or Bareos file daemon turns `group:adm:r-x`
/// back into an ACL with getgrnam, and fails on an unknown name
/// ("acl_from_text error ... Invalid argument"), losing the ACL.
fn with_host_names(own: &[&str], host: &str, kind: Accounts) -> String {
    let id_of = |line: &str| line.split(':').nth(2).map(str::to_string);
    let name_of = |line: &str| line.split(':').next().unwrap_or("").to_string();
    let mut names: std::collections::BTreeSet<String> = own.iter().map(|l| name_of(l)).collect();
    let mut ids: std::collections::BTreeSet<String> = own.iter().filter_map(|l| id_of(l)).collect();
    let mut out: String = own.iter().map(|l| format!("{l}\n")).collect();
    for line in host.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let wanted_fields = if kind == Accounts::Users { 7 } else { 4 };
        let valid = f.len() == wanted_fields && !f[0].is_empty() && !f[0].starts_with(['#', '+', '-']) && f[2].parse::<u32>().is_ok();
        if !valid || names.contains(f[0]) || ids.contains(f[2]) {
            continue;
        }
        match kind {
            Accounts::Users => out.push_str(&format!("{}:*:{}:{}::/nonexistent:/usr/sbin/nologin\n", f[0], f[2], f[3])),
            Accounts::Groups => out.push_str(&format!("{}:x:{}:\n", f[0], f[2])),
        }
        names.insert(f[0].to_string());
        ids.insert(f[2].to_string());
    }
    out
}

/// Config keys whose values are secrets, by name.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passphrase", "secret", "token", "credential", "private-key", "key-file", "keyfile"].iter().any(|w| k.contains(w))
}

/// The config as it goes into the image: secret-looking keys dropped and
/// passwords cut out of URLs, unless `include-secrets` asks otherwise.
/// Returns the TOML text, the dotted names of what was removed, and the
/// secrets that went in (include-secrets), for the manifest.
pub fn sanitized_config(config: &Config) -> Result<(String, Vec<String>, Vec<String>)> {
    let mut value = toml::Value::try_from(config).context("turning the config into TOML")?;
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    // `[backup.s3]` means nothing unless the backup goes to object storage;
    // its defaults (a credentials-file path) would only be reported as removed.
    let uses_s3 = config.backup.url.as_deref().is_some_and(|u| matches!(crate::backup::Location::parse(u), Ok(crate::backup::Location::S3(_))));
    if let (false, Some(backup)) = (uses_s3, value.get_mut("backup").and_then(|b| b.as_table_mut())) {
        backup.remove("s3");
    }
    // Mount options serialize masked; the image gets them without their
    // secret options, or whole when include-secrets says so.
    if let (Some(o), Some(backup)) = (&config.backup.mount_options, value.get_mut("backup").and_then(|b| b.as_table_mut())) {
        let secrets = o.secret_names();
        if !secrets.is_empty() {
            let (options, note) = if config.image.include_secrets { (o.clone(), &mut kept) } else { (o.without_secrets(), &mut removed) };
            note.push(format!("backup.mount-options ({})", secrets.join(", ")));
            backup.remove("mount-options");
            if !options.is_empty() {
                backup.insert("mount-options".into(), toml::Value::String(options.reveal().to_string()));
            }
        }
    }
    if !config.image.include_secrets {
        scrub(&mut value, "", &mut removed);
    }
    let text = toml::to_string(&value).context("writing the config as TOML")?;
    Ok((format!("# The config of the system this rescue image was made from, without secrets.\n{text}"), removed, kept))
}

fn scrub(v: &mut toml::Value, at: &str, removed: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            let keys: Vec<String> = t.keys().cloned().collect();
            for k in keys {
                let name = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                let is_text = matches!(t.get(&k), Some(toml::Value::String(_) | toml::Value::Table(_) | toml::Value::Array(_)));
                if is_text && is_secret_key(&k) {
                    t.remove(&k);
                    removed.push(name);
                } else if let Some(child) = t.get_mut(&k) {
                    scrub(child, &name, removed);
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                scrub(x, &format!("{at}[{i}]"), removed);
            }
        }
        toml::Value::String(s) => {
            if let Some(clean) = strip_url_password(s) {
                *s = clean;
                removed.push(format!("{at} (password in the URL)"));
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/...` -> `scheme://user@host/...`; None when there is no password.
pub fn strip_url_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _pass) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}@{host}{}", &rest[authority_end..]))
}

/// Whether a file (by path in the image and its first bytes) is a secret
/// that must not enter an image by default. Returns why.
pub fn looks_secret(path: &Path, head: &[u8]) -> Option<&'static str> {
    let p = path.to_string_lossy();
    if p == "/etc/shadow" || p == "/etc/gshadow" || p.ends_with("/etc/shadow-") {
        return Some("password hashes");
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if p.starts_with("/etc/ssh/") && name.starts_with("ssh_host_") && name.ends_with("_key") {
        return Some("an SSH host private key");
    }
    let start = &head[..head.len().min(200)];
    let text = String::from_utf8_lossy(start);
    let text = text.trim_start();
    if text.starts_with("-----BEGIN") && text.lines().next().is_some_and(|l| l.contains("PRIVATE KEY")) {
        return Some("a private key");
    }
    // age-keygen writes two comment lines first; the key line follows.
    if head.windows(AGE_KEY.len()).any(|w| w.eq_ignore_ascii_case(AGE_KEY)) {
        return Some("an age identity (the key that decrypts the backups)");
    }
    None
}

const AGE_KEY: &[u8] = b"AGE-SECRET-KEY-1";

/// Build the initramfs into `out` (zstd-compressed cpio, mode 0600) and
/// return what went in. The tree is checked against what recovery needs
/// ([`check_tree`]) before anything is written.
pub fn build(inp: &Inputs, out: &Path, manifest: &mut Manifest) -> Result<()> {
    let work = out.parent().unwrap_or(Path::new("."));
    let built = build_tree(inp, work, manifest)?;
    check_tree(&built.tree, &built.needs, &built.modules)?;
    write(&built, &inp.config.image, out, manifest)
}

/// A finished rescue tree, not yet written, and what it was built for.
pub struct Built {
    pub tree: Tree,
    /// What recovering this descriptor with this config needs.
    pub needs: Needs,
    pub modules: ModuleIndex,
    /// Secrets the backup-server parts put in on purpose (for the manifest).
    secrets: Vec<String>,
}

/// Build the rescue system's tree from what recovery needs
/// ([`needs::recovery`]): programs with their libraries, modules, files,
/// settings. Nothing is written yet but scratch files in `work`.
pub fn build_tree(inp: &Inputs, work: &Path, manifest: &mut Manifest) -> Result<Built> {
    let cfg = &inp.config.image;
    // The backup method the image restores with: what it needs to reach the backup.
    let backend = crate::backup::configured(&inp.config.backup, None, crate::backup::recorded_url(inp.layout)).ok().flatten();
    let needs = needs::recovery(inp.layout, &inp.config.image, backend.as_ref().map(|b| b.rescue_needs()).unwrap_or_default());
    let mut tree = Tree::new();
    // The usrmerge (or not) shape of the host, so paths resolve like there.
    for d in ["/bin", "/sbin", "/lib", "/lib64"] {
        if Path::new(d).exists() {
            if std::fs::symlink_metadata(d)?.file_type().is_symlink() {
                tree.add_symlink(Path::new(d), std::fs::read_link(d)?)?;
            } else {
                tree.mkdir_p(Path::new(d))?;
            }
        }
    }
    for d in ["/usr/bin", "/usr/sbin", "/etc/rescue", "/root", "/proc", "/sys", "/dev", "/run", "/tmp", "/mnt", "/var/log", "/var/lib/rescue", "/var/tmp"] {
        tree.mkdir_p(Path::new(d))?;
    }
    tree.insert(Path::new("/dev/console"), Entry { source: Source::CharDev(5, 1), mode: 0o600 })?;
    tree.insert(Path::new("/dev/null"), Entry { source: Source::CharDev(1, 3), mode: 0o666 })?;
    tree.insert(Path::new("/dev/tty"), Entry { source: Source::CharDev(5, 0), mode: 0o666 })?;

    // Programs: every one recovery and the rescue system need, the handy ones the host has.
    let ssh = !cfg.ssh_authorized_keys.is_empty();
    // What else the backup method needs in the image (a director: the file daemon's config, the console password).
    let parts = match &backend {
        Some(b) => b.image_parts()?,
        None => crate::backup::ImageParts::default(),
    };
    let udevd =
        ["/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd"].iter().map(PathBuf::from).find(|p| p.is_file()).with_context(|| {
            "systemd-udevd is not installed on this system; the rescue system needs it for /dev/disk/by-*: apt-get install udev".to_string()
        })?;
    let mut host_programs: Vec<PathBuf> = vec![udevd.clone()];
    let mut missing_required = Vec::new();
    let mut seen = BTreeSet::new();
    for p in needs.image_programs() {
        if !seen.insert(p.name.clone()) {
            continue;
        }
        match find_program(&p.name) {
            Some(path) => {
                manifest.programs.push(p.name.clone());
                // Found outside the rescue system's PATH (/usr/local/sbin, /opt/...): reachable by name there too.
                if !p.name.contains('/') && !needs::PATH_DIRS.iter().any(|d| path.parent() == Some(&Path::new("/").join(d))) {
                    tree.add_symlink(&Path::new("/usr/sbin").join(&p.name), path.clone())?;
                }
                host_programs.push(path);
            }
            None if p.runs != Runs::Optional => missing_required.push(Missing { what: p.name.clone(), package: p.package, why: p.why.clone() }),
            None => manifest.programs_missing.push(p.name.clone()),
        }
    }
    if !missing_required.is_empty() {
        bail!(
            "programs the rescue system needs are not installed on this system: {}. Install them and run mkrescue again",
            missing_required.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    // udev's helpers (ata_id, scsi_id...) that the persistent-storage rules call.
    for dir in ["/usr/lib/udev", "/lib/udev"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_file() && e.file_name() != "hwdb.bin" && super::elf::read_elf(&p).ok().flatten().is_some() {
                    host_programs.push(p);
                }
            }
            tree.add_host_path(&Path::new(dir).join("rules.d"))?;
            break;
        }
    }
    for f in needs.files.iter().filter(|f| f.runs != Runs::Target) {
        if let Some(p) = f.paths.iter().map(|p| Path::new("/").join(p)).find(|p| p.exists()) {
            tree.add_host_path(&p)?;
        }
    }
    if Path::new("/etc/udev/udev.conf").is_file() {
        tree.add_host_path(Path::new("/etc/udev/udev.conf"))?;
    }

    // Programs and their libraries, from the ELF files.
    let resolver = LibResolver::for_root(Path::new("/"));
    let mut all = host_programs.clone();
    all.push(inp.rescue_binary.clone());
    // libgcc_s is dlopen'ed by glibc for thread cancellation; not in DT_NEEDED.
    if let Some(p) = ["/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libgcc_s.so.1"].iter().find(|p| Path::new(p).exists()) {
        all.push(PathBuf::from(p));
    }
    let closure = resolver.closure(&all)?;
    if !closure.missing.is_empty() {
        let list: Vec<String> = closure.missing.iter().map(|(l, by)| format!("{l} (needed by {by})")).collect();
        bail!("shared libraries were not found: {}; the programs needing them would not start in the rescue system", list.join(", "));
    }
    for f in &closure.files {
        if f == &inp.rescue_binary {
            continue;
        }
        tree.add_host_path(f)?;
        if !host_programs.contains(f) {
            manifest.libraries.push(f.display().to_string());
        }
    }
    // Each program also under the name we looked it up by (a symlink chain on the host).
    for p in &host_programs {
        tree.add_host_path(p)?;
    }
    let rescue_bin = strip_debug(&inp.rescue_binary, &work.join("rescue-bin"))?;
    tree.add_host_file_as(Path::new("/usr/bin/rescue"), &rescue_bin)?;

    // busybox applets fill in whatever real program is absent.
    let busybox = find_program("busybox").context("busybox vanished")?;
    let busybox_in_image = tree.resolve(&busybox)?;
    let applets = crate::cmd::Cmd::new(&busybox).arg("--list-full").read()?;
    let bin_dirs = ["/bin", "/sbin", "/usr/bin", "/usr/sbin"];
    let mut applet_count = 0;
    for a in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let name = a.rsplit('/').next().unwrap_or(a);
        if bin_dirs.iter().any(|d| tree.contains(&Path::new(d).join(name))) {
            continue;
        }
        tree.add_symlink(&Path::new("/").join(a), busybox_in_image.clone())?;
        applet_count += 1;
    }
    manifest.busybox_applets = applet_count;
    if !tree.contains(Path::new("/bin/sh")) {
        tree.add_symlink(Path::new("/bin/sh"), busybox_in_image.clone())?;
    }

    // Kernel modules and firmware.
    let index = ModuleIndex::load(&inp.modules_dir)?;
    let version = index.version();
    let mut wanted: Vec<String> = needs.module_names().map(str::to_string).collect();
    wanted.extend(cfg.extra_modules.iter().cloned());
    let running = nix::sys::utsname::uname().ok().map(|u| u.release().to_string_lossy().into_owned());
    if running.as_deref() == Some(version.as_str()) {
        // Building for the running kernel: what it uses now is what it needs.
        wanted.extend(modules::loaded_modules());
    }
    let set = match cfg.modules {
        ModulesPolicy::Needed => index.closure(&wanted),
        ModulesPolicy::All => index.closure(&index.all_names()),
    };
    let load_set = index.closure(&wanted);
    let image_modules = PathBuf::from("/lib/modules").join(&version);
    for f in &set.files {
        tree.add_host_file_as(&image_modules.join(f), &inp.modules_dir.join(f))?;
    }
    for idx_file in [
        "modules.dep",
        "modules.dep.bin",
        "modules.alias",
        "modules.alias.bin",
        "modules.softdep",
        "modules.symbols",
        "modules.symbols.bin",
        "modules.builtin",
        "modules.builtin.bin",
        "modules.builtin.alias.bin",
        "modules.builtin.modinfo",
        "modules.order",
        "modules.devname",
    ] {
        let p = inp.modules_dir.join(idx_file);
        if p.is_file() {
            tree.add_host_file_as(&image_modules.join(idx_file), &p)?;
        }
    }
    let mut load: Vec<String> = wanted.iter().map(|w| modules::normalize(w)).filter(|w| load_set.modules.contains(w)).collect();
    load.sort();
    load.dedup();
    tree.add_bytes(Path::new("/etc/rescue/modules.load"), load.join("\n") + "\n", 0o644)?;
    manifest.kernel_version = version.clone();
    manifest.modules = set.modules.iter().cloned().collect();
    manifest.modules_unknown = set.unknown.iter().cloned().collect();
    for fw in modules::firmware_names(&index, &set)? {
        let candidates = [fw.clone(), format!("{fw}.xz"), format!("{fw}.zst")];
        match candidates.iter().find(|c| cfg.firmware_dir.join(c).is_file()) {
            Some(c) => {
                tree.add_host_file_as(&Path::new("/lib/firmware").join(c), &cfg.firmware_dir.join(c))?;
                manifest.firmware.push(c.clone());
            }
            None => manifest.firmware_missing.push(fw),
        }
    }

    // Settings, descriptor, config.
    let layout_text = std::fs::read(&inp.layout_path).with_context(|| format!("reading {}", inp.layout_path.display()))?;
    tree.add_bytes(Path::new(IMAGE_LAYOUT), layout_text, 0o600)?;
    let (config_text, removed, config_secrets) = sanitized_config(inp.config)?;
    manifest.config_removed = removed;
    tree.add_bytes(Path::new(IMAGE_CONFIG), config_text, 0o600)?;
    let hostname = if inp.layout.host.hostname.is_empty() { "unknown".to_string() } else { inp.layout.host.hostname.clone() };
    let env = [
        ("RESCUE_VERSION", env!("CARGO_PKG_VERSION").to_string()),
        ("RESCUE_HOSTNAME", hostname.clone()),
        ("RESCUE_BUILT", manifest.created.clone()),
        (
            "RESCUE_NETWORK",
            match cfg.network {
                NetworkMode::Dhcp => "dhcp",
                NetworkMode::Static => "static",
                NetworkMode::Recorded => "recorded",
                NetworkMode::None => "none",
            }
            .to_string(),
        ),
        (
            "RESCUE_AFTER_RECOVER",
            match cfg.after_recover {
                super::config::AfterRecover::Poweroff => "poweroff",
                super::config::AfterRecover::Reboot => "reboot",
                super::config::AfterRecover::Shell => "shell",
            }
            .to_string(),
        ),
        ("UDEVD", udevd.display().to_string()),
    ];
    let env = env.into_iter().chain(parts.env.iter().cloned());
    let env_text: String = env.map(|(k, v)| format!("{k}={}\n", shell_quote(&v))).collect();
    tree.add_bytes(Path::new("/etc/rescue/image.env"), env_text, 0o644)?;
    tree.add_bytes(Path::new("/init"), INIT, 0o755)?;
    tree.add_bytes(Path::new("/etc/rescue/udhcpc.sh"), UDHCPC_SCRIPT, 0o755)?;
    if let (NetworkMode::Recorded, Some(net)) = (cfg.network, &inp.layout.network) {
        tree.add_bytes(Path::new(super::network::RECORDED_NET), super::network::recorded_net(net), 0o644)?;
    }
    if !cfg.static_net.is_empty() {
        let text: String = cfg
            .static_net
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {}\n",
                    s.mac.to_ascii_lowercase(),
                    s.address,
                    s.gateway.as_deref().unwrap_or("-"),
                    if s.dns.is_empty() { "-".to_string() } else { s.dns.join(",") }
                )
            })
            .collect();
        tree.add_bytes(Path::new("/etc/rescue/static-net"), text, 0o644)?;
    }
    // Accounts without passwords: root logs in on the console (it is the
    // console of a machine being recovered) or with a configured SSH key.
    // This system's user and group names follow, locked.
    let users =
        ["root:x:0:0:root:/root:/bin/sh", "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"];
    let host_users = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    tree.add_bytes(Path::new("/etc/passwd"), with_host_names(&users, &host_users, Accounts::Users), 0o644)?;
    let groups = [
        "root:x:0:",
        "tty:x:5:",
        "disk:x:6:",
        "kmem:x:15:",
        "dialout:x:20:",
        "cdrom:x:24:",
        "tape:x:26:",
        "audio:x:29:",
        "video:x:44:",
        "input:x:105:",
        "kvm:x:106:",
        "render:x:107:",
        "sgx:x:108:",
        "nogroup:x:65534:",
    ];
    let host_groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    tree.add_bytes(Path::new("/etc/group"), with_host_names(&groups, &host_groups, Accounts::Groups), 0o644)?;
    tree.add_bytes(Path::new("/etc/hostname"), format!("{hostname}\n"), 0o644)?;
    tree.add_bytes(Path::new("/etc/fstab"), "# the rescue system runs from RAM\n", 0o644)?;
    tree.add_symlink(Path::new("/etc/mtab"), "/proc/self/mounts")?;
    tree.add_bytes(
        Path::new("/etc/profile"),
        format!(
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nPS1='RESCUE {hostname}:$PWD# '\necho 'rescue system: run \"rescue recover\" to recover {hostname}.'\n"
        ),
        0o644,
    )?;
    if Path::new("/etc/os-release").exists() {
        tree.add_host_path(Path::new("/etc/os-release")).ok();
    }
    if ssh {
        let keys = cfg.ssh_authorized_keys.join("\n") + "\n";
        tree.mkdir_p(Path::new("/root/.ssh"))?;
        tree.add_bytes(Path::new("/root/.ssh/authorized_keys"), keys, 0o600)?;
        tree.add_bytes(
            Path::new("/etc/ssh/sshd_config"),
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPidFile /run/sshd.pid\n",
            0o644,
        )?;
    }
    for p in &parts.host_paths {
        tree.add_host_path(p)?;
    }
    for d in &parts.dirs {
        tree.mkdir_p(d)?;
    }
    for (path, data, mode) in &parts.files {
        tree.add_bytes(path, data.clone(), *mode)?;
    }
    for f in &cfg.extra_files {
        tree.add_host_path(f).with_context(|| format!("adding extra-files entry {}", f.display()))?;
    }
    let mut secrets = parts.secrets;
    secrets.extend(config_secrets.into_iter().map(|s| format!("{IMAGE_CONFIG}: {s}")));
    Ok(Built { tree, needs, modules: index, secrets })
}

/// What of `needs` the finished image `tree` lacks, read from the tree
/// itself (as verify will look in the booted rescue system), never from
/// the host: programs in the rescue system's PATH, files, and the required
/// kernel modules (built into the kernel or in the tree).
pub fn missing_in_tree(tree: &Tree, needs: &Needs, modules: &ModuleIndex) -> Vec<Missing> {
    let has = |rel: &str| tree.resolve_all(&Path::new("/").join(rel)).is_ok_and(|p| tree.get(&p).is_some());
    let mut missing = needs.missing_in_image(has);
    let dir = PathBuf::from("/lib/modules").join(modules.version());
    for m in needs.modules.iter().filter(|m| m.required && !modules.is_builtin(m.name)) {
        if !modules.file_of(m.name).is_some_and(|f| tree.contains(&dir.join(f))) {
            missing.push(Missing { what: format!("kernel module {}", m.name), package: None, why: m.why.clone() });
        }
    }
    missing
}

/// Refuse an image that would fail recovery's verify phase: name each
/// missing program with its Debian package (exit code 3).
pub fn check_tree(tree: &Tree, needs: &Needs, modules: &ModuleIndex) -> Result<()> {
    let missing = missing_in_tree(tree, needs, modules);
    if !missing.is_empty() {
        bail!(
            "the rescue image would not hold what recovering this system needs: {}. No image was written. Install the \
             package(s) on this system (or give the kernel that has the modules) and run mkrescue again",
            missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// Write the tree as the initramfs: cpio newc through zstd, refusing secrets unless allowed.
fn write(built: &Built, cfg: &super::config::ImageConfig, out: &Path, manifest: &mut Manifest) -> Result<()> {
    let tree = &built.tree;
    let tmp = out.with_extension("tmp");
    let file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode_0600().open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut enc = zstd::stream::Encoder::new(std::io::BufWriter::new(file), cfg.compression_level)?;
    let threads = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    enc.multithread(threads).ok();
    // The kernel needs checksum-less frames it can stream; content size is unknown anyway.
    enc.include_checksum(false)?;
    let allow = cfg.include_secrets;
    let mut secrets = Vec::new();
    tree.write_cpio(&mut enc, |path, head| {
        if let Some(why) = looks_secret(path, head) {
            if !allow {
                bail!(
                    "{} would put {why} into the rescue image; remove it from extra-files, or set include-secrets = true in [image] if that is really wanted",
                    path.display()
                );
            }
            secrets.push(format!("{} ({why})", path.display()));
        }
        Ok(())
    })?;
    let mut w = enc.finish()?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out).with_context(|| format!("moving {} into place", out.display()))?;
    secrets.extend(built.secrets.iter().cloned());
    manifest.secrets_included = secrets;
    manifest.files = tree
        .entries()
        .map(|(p, e)| super::manifest::FileEntry {
            path: p.display().to_string(),
            kind: match &e.source {
                Source::Dir => "dir",
                Source::Host(_) | Source::Bytes(_) => "file",
                Source::Symlink(_) => "symlink",
                Source::CharDev(..) => "chardev",
            }
            .into(),
            from: match &e.source {
                Source::Host(h) => Some(h.display().to_string()),
                Source::Symlink(t) => Some(format!("-> {}", t.display())),
                _ => None,
            },
        })
        .collect();
    manifest.content_bytes = tree.content_size();
    Ok(())
}

/// A copy of `exe` without debug sections when it has them (a debug build
/// of rescue is ten times its release size) and `objcopy` is installed;
/// else `exe` itself.
fn strip_debug(exe: &Path, scratch: &Path) -> Result<PathBuf> {
    let data = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let has_debug = goblin::elf::Elf::parse(&data)
        .map(|e| e.section_headers.iter().any(|s| e.shdr_strtab.get_at(s.sh_name).is_some_and(|n| n.starts_with(".debug"))))
        .unwrap_or(false);
    if !has_debug || find_program("objcopy").is_none() {
        return Ok(exe.to_path_buf());
    }
    crate::cmd::Cmd::new("objcopy").arg("--strip-debug").arg(exe).arg(scratch).run()?;
    Ok(scratch.to_path_buf())
}

/// `OpenOptions::mode(0o600)` under a readable name.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_join_the_image_accounts_locked() {
        let host = "root:x:0:0:root:/root:/bin/bash\n#comment\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nsshd:x:104:65534::/run/sshd:/usr/sbin/nologin\nbad:line\n+nis\n";
        let users = with_host_names(&["root:x:0:0:root:/root:/bin/sh", "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin"], host, Accounts::Users);
        assert_eq!(users, "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nalice:*:1000:1000::/nonexistent:/usr/sbin/nologin\n");
        // A host group whose id the image uses keeps out; members are dropped.
        let groups = with_host_names(&["root:x:0:", "tty:x:5:"], "root:x:0:\nadm:x:4:alice\nsystemd-journal:x:999:\nttyhost:x:5:\n", Accounts::Groups);
        assert_eq!(groups, "root:x:0:\ntty:x:5:\nadm:x:4:\nsystemd-journal:x:999:\n");
        assert_eq!(with_host_names(&["root:x:0:"], "", Accounts::Groups), "root:x:0:\n");
    }

    #[test]
    fn url_passwords_are_cut() {
        assert_eq!(strip_url_password("nfs://u:pw@host/x").as_deref(), Some("nfs://u@host/x"));
        assert_eq!(strip_url_password("file:///backup"), None);
        assert_eq!(strip_url_password("cifs://user@host/share"), None);
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(looks_secret(Path::new("/etc/shadow"), b"root:$6$").is_some());
        assert!(looks_secret(Path::new("/etc/ssh/ssh_host_ed25519_key"), b"").is_some());
        assert!(looks_secret(Path::new("/etc/ssh/ssh_host_ed25519_key.pub"), b"ssh-ed25519 AAAA").is_none());
        assert!(looks_secret(Path::new("/x/key.pem"), b"-----BEGIN RSA PRIVATE KEY-----\nMII").is_some());
        assert!(looks_secret(Path::new("/x/k"), b"-----BEGIN OPENSSH PRIVATE KEY-----\n").is_some());
        assert!(looks_secret(Path::new("/x/cert.pem"), b"-----BEGIN CERTIFICATE-----\n").is_none());
        let age = b"# created: 2026-12-02T01:00:00Z\n# public key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\nAGE-SECRET-KEY-1QQ";
        assert!(looks_secret(Path::new("/etc/rescue/backup-key.txt"), age).unwrap().contains("age identity"));
        assert!(looks_secret(Path::new("/etc/rescue/recipients.txt"), b"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n").is_none());
        // A binary that merely mentions the words is not a key.
        assert!(looks_secret(Path::new("/usr/bin/ssh-keygen"), b"\x7fELF....PRIVATE KEY").is_none());
    }

    #[test]
    fn config_secrets_are_removed() {
        let mut c = Config::default();
        c.backup.url = Some("nfs://backup:hunter2@nas/export".into());
        let (text, removed, _) = sanitized_config(&c).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("nfs://backup@nas/export"), "{text}");
        assert_eq!(removed, vec!["backup.url (password in the URL)"]);
    }

    #[test]
    fn the_recovery_hooks_travel_into_the_image() {
        let c = Config::from_toml(
            "[hooks]\ntimeout = 30\npre-recover = \"ip link set eth1 up\"\n[hooks.post-recover]\ncommand = \"systemctl enable bacula-dir\"\ntimeout = 9\n",
        )
        .unwrap();
        let (text, removed, _) = sanitized_config(&c).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        let back: Config = toml::from_str(text.split_once('\n').unwrap().1).unwrap();
        assert_eq!(back.hooks, c.hooks, "{text}");
    }

    #[test]
    fn a_password_in_the_mount_options_is_a_secret_of_the_image() {
        let mut c = Config::default();
        c.backup.mount_options = Some(crate::backup::config::MountOptions::new("username=alice,password=hunter2,vers=3.0"));
        let (text, removed, kept) = sanitized_config(&c).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("password") && text.contains("username=alice,vers=3.0"), "{text}");
        assert_eq!(removed, vec!["backup.mount-options (password)"]);
        assert!(kept.is_empty());
        let back: Config = toml::from_str(text.split_once('\n').unwrap().1).unwrap();
        assert_eq!(back.backup.mount_options.unwrap().reveal(), "username=alice,vers=3.0");
        // include-secrets: it goes in whole, and the manifest says so.
        c.image.include_secrets = true;
        let (text, removed, kept) = sanitized_config(&c).unwrap();
        assert!(text.contains("password=hunter2"), "{text}");
        assert!(removed.is_empty());
        assert_eq!(kept, vec!["backup.mount-options (password)"]);
    }
}
