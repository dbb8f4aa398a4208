//! Turning what the system reports into a [`Layout`]: which disks are in
//! scope, what sits on them (partitions → RAID → LUKS → LVM → filesystems),
//! where it is mounted, and how the machine boots.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use super::parse::{self, BlockNode};
use super::source::SystemView;
use crate::layout::recovery::{MountScope, NotRecovered};
use crate::layout::*;

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Limit capture to these disks (`/dev/sda`, `sda`, `/dev/disk/by-id/...`). Empty: all fixed disks.
    pub disks: Vec<String>,
    /// Record mount points relative to this directory (`/` for the running system).
    pub root: String,
    pub exclude_disks: Vec<String>,
    /// Mount points or patterns (`/var/lib/docker/*`) never recorded: see [`MountScope`].
    pub exclude_mounts: Vec<String>,
    /// Disks the backup goes to (mkbackup's `usb://` destination): left out
    /// like `exclude_disks`, but that is expected, so not a warning.
    pub backup_disks: Vec<String>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self { disks: Vec::new(), root: "/".into(), exclude_disks: Vec::new(), exclude_mounts: Vec::new(), backup_disks: Vec::new() }
    }
}

/// The captured layout and what could not be captured.
#[derive(Debug)]
pub struct Capture {
    pub layout: Layout,
    pub warnings: Vec<String>,
}

/// One block device as the probe sees it: lsblk node plus its parents.
#[derive(Debug, Clone)]
struct Dev {
    node: BlockNode,
    parents: BTreeSet<String>,
}

struct Probe<'a> {
    sys: &'a dyn SystemView,
    warnings: Vec<String>,
    /// kname → device
    devs: BTreeMap<String, Dev>,
    /// blkid results by kname
    blkid: BTreeMap<String, BTreeMap<String, String>>,
    /// kname → block id in the descriptor
    ids: BTreeMap<String, String>,
}

impl Probe<'_> {
    fn warn(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.warnings.push(msg);
    }

    fn blkid(&mut self, kname: &str) -> BTreeMap<String, String> {
        if let Some(b) = self.blkid.get(kname) {
            return b.clone();
        }
        let path = self.devs.get(kname).map(|d| d.node.path.clone()).filter(|p| !p.is_empty()).unwrap_or(format!("/dev/{kname}"));
        let b = blkid_of(self.sys, &path);
        self.blkid.insert(kname.to_string(), b.clone());
        b
    }

    fn read_trim(&self, path: &str) -> Option<String> {
        self.sys.read(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// Descendants of a device in the block tree (children, grandchildren...).
    fn descendants(&self, kname: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![kname.to_string()];
        while let Some(k) = todo.pop() {
            for (c, d) in &self.devs {
                if d.parents.contains(&k) && out.insert(c.clone()) {
                    todo.push(c.clone());
                }
            }
        }
        out
    }

    /// The disks (top-level devices) a device sits on.
    fn roots_of(&self, kname: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![kname.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(k) = todo.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            match self.devs.get(&k) {
                Some(d) if d.parents.is_empty() => {
                    out.insert(k);
                }
                Some(d) => todo.extend(d.parents.iter().cloned()),
                None => {}
            }
        }
        out
    }
}

/// Signatures on a device, read from the device itself (works without udev).
fn blkid_of(sys: &dyn SystemView, path: &str) -> BTreeMap<String, String> {
    // Exit status 2 means "no signature found": an empty answer, not a failure.
    match sys.run(&["blkid", "-p", "--cache-file", "/dev/null", "-o", "export", path]) {
        Ok(out) => parse::key_values(&out),
        Err(e) => {
            tracing::debug!("blkid found nothing on {path}: {e:#}");
            BTreeMap::new()
        }
    }
}

fn flatten(nodes: &[BlockNode], parent: Option<&str>, out: &mut BTreeMap<String, Dev>) {
    for n in nodes {
        let entry = out.entry(n.kname.clone()).or_insert_with(|| {
            let mut node = n.clone();
            node.children.clear();
            Dev { node, parents: BTreeSet::new() }
        });
        if let Some(p) = parent {
            entry.parents.insert(p.to_string());
        }
        flatten(&n.children, Some(&n.kname), out);
    }
}

/// `/mnt/x` under root `/mnt` → `/x`; outside the root → None.
fn relative_to_root(path: &str, root: &str) -> Option<String> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return Some(path.to_string());
    }
    if path == root {
        return Some("/".into());
    }
    path.strip_prefix(root).filter(|r| r.starts_with('/')).map(str::to_string)
}

fn is_mbr_extended(type_id: &str) -> bool {
    matches!(type_id, "05" | "0f" | "85")
}

/// Capture the layout of the system `sys` shows.
pub fn capture(sys: &dyn SystemView, opts: &CaptureOptions) -> Result<Capture> {
    let lsblk_json = sys.run(&["lsblk", "-J", "-b", "-O"]).context("listing block devices")?;
    let tree = parse::lsblk(&lsblk_json)?;
    let mut devs = BTreeMap::new();
    flatten(&tree, None, &mut devs);
    let mut p = Probe { sys, warnings: Vec::new(), devs, blkid: BTreeMap::new(), ids: BTreeMap::new() };

    let host = capture_host(&mut p, opts);
    let disks = select_disks(&mut p, opts)?;

    // Every device in scope: the selected disks and what sits only on them.
    let mut scope: BTreeSet<String> = BTreeSet::new();
    for d in &disks {
        scope.insert(d.clone());
        for c in p.descendants(d) {
            let roots = p.roots_of(&c);
            if roots.iter().all(|r| disks.contains(r)) {
                scope.insert(c);
            } else if !scope.contains(&c) {
                let others: Vec<_> = roots.difference(&disks).cloned().collect();
                let msg = format!("`{c}` also sits on disk(s) {} that are not captured; it is left out (add them with --disk)", others.join(", "));
                if !p.warnings.contains(&msg) {
                    p.warn(msg);
                }
            }
        }
    }

    // One `blkid -p` per device, in parallel: it is most of the probe's calls.
    {
        use rayon::prelude::*;
        let todo: Vec<(String, String)> =
            scope.iter().map(|k| (k.clone(), p.devs.get(k).map(|d| d.node.path.clone()).filter(|x| !x.is_empty()).unwrap_or(format!("/dev/{k}")))).collect();
        let found: Vec<(String, BTreeMap<String, String>)> = todo.par_iter().map(|(k, path)| (k.clone(), blkid_of(sys, path))).collect();
        p.blkid.extend(found);
    }

    let mut layout = Layout {
        version: VERSION,
        host,
        disks: Vec::new(),
        partitions: Vec::new(),
        raids: Vec::new(),
        luks: Vec::new(),
        lvm_pvs: Vec::new(),
        lvm_vgs: Vec::new(),
        lvm_lvs: Vec::new(),
        filesystems: Vec::new(),
        swaps: Vec::new(),
        mounts: Vec::new(),
        excluded: Vec::new(),
        bootloader: Bootloader::default(),
        backup: None,
        network: None,
    };

    let by_id = by_id_links(&p);
    for d in &disks {
        capture_disk(&mut p, d, &by_id, &mut layout)?;
    }
    // Kernel names of RAID, LUKS and LVM devices get their descriptor ids.
    capture_raid(&mut p, &scope, &mut layout);
    capture_luks(&mut p, &scope, &mut layout);
    capture_lvm(&mut p, &scope, &mut layout);
    capture_contents(&mut p, &scope, &mut layout);
    capture_mounts(&mut p, opts, &scope, &mut layout);
    capture_bootloader(&mut p, opts, &disks, &mut layout);
    capture_net(&mut p, opts, &mut layout);

    let problems = crate::layout::validate::check(&layout, None);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|e| e.to_string()).collect();
        anyhow::bail!(
            "the captured layout is inconsistent (please report this as a bug, with `rescue savelayout --record-fixture FILE`):\n  {}",
            list.join("\n  ")
        );
    }
    Ok(Capture { layout, warnings: p.warnings })
}

/// The network belongs to the running system: recorded when capturing `/`
/// (not a tree mounted elsewhere), on a system that has network interfaces.
fn capture_net(p: &mut Probe, opts: &CaptureOptions, layout: &mut Layout) {
    if !opts.root.trim_end_matches('/').is_empty() || !p.sys.exists("/sys/class/net") {
        return;
    }
    match super::network::capture_network(p.sys, &opts.root) {
        Ok(net) => layout.network = Some(net),
        Err(e) => p.warn(format!(
            "the network was not recorded ({e:#}); the rescue system can only use DHCP and a recovery onto other NICs cannot rewrite their config"
        )),
    }
}

fn capture_host(p: &mut Probe, opts: &CaptureOptions) -> Host {
    let root = opts.root.trim_end_matches('/');
    let os = [format!("{root}/etc/os-release"), format!("{root}/usr/lib/os-release")]
        .iter()
        .find_map(|f| p.sys.read(f).ok())
        .map(|t| parse::key_values(&t))
        .unwrap_or_default();
    Host {
        hostname: p.read_trim("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
        os_release: os.get("PRETTY_NAME").cloned().unwrap_or_default(),
        os_id: os.get("ID").cloned().unwrap_or_default(),
        kernel: p.read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
        arch: p.sys.run(&["uname", "-m"]).map(|s| s.trim().to_string()).unwrap_or_else(|_| std::env::consts::ARCH.into()),
        firmware: if p.sys.exists("/sys/firmware/efi") { Firmware::Uefi } else { Firmware::Bios },
        captured_at: crate::util::now_rfc3339(),
        rescue_version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn select_disks(p: &mut Probe, opts: &CaptureOptions) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let excluded: BTreeSet<String> = opts.exclude_disks.iter().map(|d| d.trim_start_matches("/dev/").to_string()).collect();
    if !opts.disks.is_empty() {
        for want in &opts.disks {
            let name = if want.starts_with("/dev/disk/") {
                p.sys.read_link(want).map(|t| t.rsplit('/').next().unwrap_or("").to_string()).unwrap_or_default()
            } else {
                want.trim_start_matches("/dev/").to_string()
            };
            match p.devs.get(&name) {
                Some(d) if d.parents.is_empty() => {
                    out.insert(name);
                }
                Some(_) => crate::bail_input!("`{want}` is not a whole disk (it is part of another device); give the disk it is on"),
                None => crate::bail_input!("no block device `{want}` on this system (see `lsblk`)"),
            }
        }
        return Ok(out);
    }
    let candidates: Vec<(String, BlockNode)> = p.devs.iter().filter(|(_, d)| d.parents.is_empty()).map(|(k, d)| (k.clone(), d.node.clone())).collect();
    for (k, n) in candidates {
        if n.kind != "disk" || n.size == 0 || k.starts_with("zram") || k.starts_with("ram") || n.read_only {
            continue;
        }
        if opts.backup_disks.iter().any(|d| d.trim_start_matches("/dev/") == k) {
            tracing::info!("disk {k} holds the backup destination: left out of the layout");
            continue;
        }
        if excluded.contains(&k) {
            p.warn(format!("disk {k} is excluded by the configuration (capture.exclude-disks)"));
            continue;
        }
        if n.removable {
            p.warn(format!("skipping removable disk {k} (name it with --disk to capture it)"));
            continue;
        }
        out.insert(k);
    }
    if out.is_empty() {
        crate::bail_input!("found no disk to capture (none that is fixed, writable and non-empty); name one with --disk");
    }
    Ok(out)
}

/// kname → the `/dev/disk/by-id` names pointing to it (empty without udev).
fn by_id_links(p: &Probe) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !p.sys.exists("/dev/disk/by-id") {
        return out;
    }
    for name in p.sys.list_dir("/dev/disk/by-id").unwrap_or_default() {
        if let Ok(target) = p.sys.read_link(&format!("/dev/disk/by-id/{name}")) {
            let k = target.rsplit('/').next().unwrap_or("").to_string();
            out.entry(k).or_default().push(name);
        }
    }
    // Most specific first: WWN names, then vendor/serial names, then the rest.
    for v in out.values_mut() {
        v.sort_by_key(|n| {
            (
                if n.starts_with("wwn-") {
                    0
                } else if n.contains("-eui.") || n.starts_with("dm-") || n.starts_with("md-") || n.starts_with("lvm-") {
                    2
                } else {
                    1
                },
                n.clone(),
            )
        });
    }
    out
}

fn capture_disk(p: &mut Probe, kname: &str, by_id: &BTreeMap<String, Vec<String>>, layout: &mut Layout) -> Result<()> {
    let node = p.devs.get(kname).map(|d| d.node.clone()).context("disk vanished")?;
    let path = if node.path.is_empty() { format!("/dev/{kname}") } else { node.path.clone() };
    let sysfs = |f: &str| format!("/sys/block/{kname}/{f}");
    let serial = node.serial.clone().or_else(|| p.read_trim(&sysfs("device/serial")));
    let wwn = node.wwn.clone().or_else(|| p.read_trim(&sysfs("wwid")).or_else(|| p.read_trim(&sysfs("device/wwid"))));
    let model = node.model.clone().or_else(|| p.read_trim(&sysfs("device/model")));
    let b = p.blkid(kname);
    let mut disk = Disk {
        name: kname.to_string(),
        path: path.clone(),
        by_id: by_id.get(kname).cloned().unwrap_or_default(),
        wwn,
        serial,
        model,
        size: node.size,
        logical_sector_size: node.log_sec,
        physical_sector_size: node.phy_sec,
        removable: node.removable,
        table: None,
        disk_guid: None,
        mbr_signature: None,
    };
    p.ids.insert(kname.to_string(), kname.to_string());
    let pttype = b.get("PTTYPE").cloned();
    if matches!(pttype.as_deref(), Some("gpt") | Some("dos")) {
        let json = p.sys.run(&["sfdisk", "-J", &path]).with_context(|| format!("reading the partition table of {path}"))?;
        let t = parse::sfdisk(&json)?;
        let gpt = t.label == "gpt";
        disk.table = Some(if gpt { TableType::Gpt } else { TableType::Msdos });
        if let Some(ss) = t.sectorsize {
            disk.logical_sector_size = ss;
        }
        if gpt {
            disk.disk_guid = t.id.clone().map(|s| s.to_uppercase());
        } else {
            disk.mbr_signature = t.id.clone().map(|s| format!("0x{:0>8}", s.trim_start_matches("0x").to_lowercase()));
        }
        let ss = disk.logical_sector_size;
        let problems = if gpt { check_gpt_on_disk(p, &path, ss, &t) } else { check_mbr_on_disk(p, &path, &t) };
        for m in problems {
            p.warn(format!(
                "{kname}: {m}; the descriptor records what `sfdisk -J {path}` reports: check the table (`sfdisk --verify {path}`) before relying on it"
            ));
        }
        for sp in &t.partitions {
            let name = sp.node.rsplit('/').next().unwrap_or(&sp.node).to_string();
            let number = partition_number(&name, kname).with_context(|| format!("cannot tell the partition number of {}", sp.node))?;
            let (type_id, kind) = if gpt {
                (sp.type_id.to_uppercase(), PartitionKind::Primary)
            } else {
                let t = u8::from_str_radix(&sp.type_id, 16).map(|v| format!("{v:02x}")).unwrap_or_else(|_| sp.type_id.clone());
                let kind = if number >= 5 {
                    PartitionKind::Logical
                } else if is_mbr_extended(&t) {
                    PartitionKind::Extended
                } else {
                    PartitionKind::Primary
                };
                (t, kind)
            };
            p.ids.insert(name.clone(), name.clone());
            layout.partitions.push(Partition {
                name,
                disk: kname.to_string(),
                number,
                start: sp.start,
                size: sp.size,
                type_id,
                uuid: sp.uuid.clone().map(|u| u.to_uppercase()),
                label: sp.name.clone().filter(|n| !n.is_empty()),
                attrs: sp.attrs.clone().filter(|a| !a.is_empty()),
                bootable: sp.bootable,
                kind,
                fixed: None,
            });
        }
    } else if let Some(other) = pttype {
        p.warn(format!("disk {kname} has a `{other}` partition table, which rescue does not support; its partitions are left out"));
    }
    layout.disks.push(disk);
    Ok(())
}

/// Partition number of an sfdisk entry (`/dev/sda2` → 2), whatever the disk naming.
fn sfdisk_number(node: &str) -> Option<u32> {
    let digits: String = node.chars().rev().take_while(char::is_ascii_digit).collect::<Vec<_>>().into_iter().rev().collect();
    digits.parse().ok()
}

/// Read the primary GPT (header and entry array) from the disk itself with the
/// `gpt` crate and compare it with what sfdisk reported. Returns the
/// disagreements. A head shorter than needed (a fixture recorded before this
/// check existed) skips the check.
fn check_gpt_on_disk(p: &Probe, path: &str, sector: u64, t: &parse::SfdiskTable) -> Vec<String> {
    use gpt::disk::LogicalBlockSize;
    let Ok(lb) = LogicalBlockSize::try_from(sector) else { return Vec::new() };
    let head = match p.sys.read_head(path, (2 * sector) as usize) {
        Ok(h) if h.len() as u64 == 2 * sector => h,
        Ok(_) | Err(_) => {
            tracing::debug!("{path}: no on-disk GPT header to compare with sfdisk");
            return Vec::new();
        }
    };
    let header = match gpt::header::read_header_from_arbitrary_device(&mut std::io::Cursor::new(&head), lb) {
        Ok(h) => h,
        Err(e) => return vec![format!("the primary GPT header is not valid ({e}), sfdisk probably used the backup header")],
    };
    if header.part_size != 128 || header.num_parts > 1024 {
        return vec![format!("unusual GPT entry array ({} entries of {} bytes)", header.num_parts, header.part_size)];
    }
    let need = (header.part_start * sector + u64::from(header.num_parts) * 128) as usize;
    let head = match p.sys.read_head(path, need) {
        Ok(h) if h.len() >= need => h,
        _ => {
            tracing::debug!("{path}: GPT entry array not readable to compare with sfdisk");
            return Vec::new();
        }
    };
    let entries = match gpt::partition::file_read_partitions(&mut std::io::Cursor::new(&head), &header, lb) {
        Ok(e) => e,
        Err(e) => return vec![format!("the GPT entry array cannot be read ({e})")],
    };
    let mut out = Vec::new();
    let guid = header.disk_guid.to_string().to_uppercase();
    if t.id.as_deref().map(str::to_uppercase).as_deref() != Some(guid.as_str()) {
        out.push(format!("the on-disk GPT has disk GUID {guid}, sfdisk reports {:?}", t.id));
    }
    for sp in &t.partitions {
        let Some(n) = sfdisk_number(&sp.node) else { continue };
        let Some(e) = entries.get(&n) else {
            out.push(format!("partition {n} is missing from the on-disk GPT"));
            continue;
        };
        let size = e.last_lba + 1 - e.first_lba;
        if (e.first_lba, size) != (sp.start, sp.size) {
            out.push(format!("partition {n}: on disk start {} size {}, sfdisk start {} size {}", e.first_lba, size, sp.start, sp.size));
        }
        if !e.part_type_guid.guid.to_string().eq_ignore_ascii_case(&sp.type_id) {
            out.push(format!("partition {n}: on-disk type {}, sfdisk {}", e.part_type_guid.guid, sp.type_id));
        }
        if sp.uuid.as_deref().is_some_and(|u| !e.part_guid.to_string().eq_ignore_ascii_case(u)) {
            out.push(format!("partition {n}: on-disk GUID {}, sfdisk {:?}", e.part_guid, sp.uuid));
        }
        if e.name != sp.name.clone().unwrap_or_default() {
            out.push(format!("partition {n}: on-disk name {:?}, sfdisk {:?}", e.name, sp.name));
        }
    }
    if entries.len() != t.partitions.len() {
        out.push(format!("the on-disk GPT has {} partitions, sfdisk reports {}", entries.len(), t.partitions.len()));
    }
    out
}

/// Read the MBR sector with `mbrman` and compare the signature and the primary
/// entries with what sfdisk reported.
fn check_mbr_on_disk(p: &Probe, path: &str, t: &parse::SfdiskTable) -> Vec<String> {
    let head = match p.sys.read_head(path, 512) {
        Ok(h) if h.len() == 512 => h,
        _ => return Vec::new(),
    };
    let h = match mbrman::MBRHeader::read_from(&mut std::io::Cursor::new(&head)) {
        Ok(h) => h,
        Err(e) => return vec![format!("the MBR cannot be read ({e})")],
    };
    let mut out = Vec::new();
    let sig = format!("0x{:08x}", u32::from_le_bytes(h.disk_signature));
    let want = t.id.as_deref().map(|s| format!("0x{:0>8}", s.trim_start_matches("0x").to_lowercase()));
    if want.as_deref() != Some(sig.as_str()) {
        out.push(format!("the MBR signature on disk is {sig}, sfdisk reports {:?}", t.id));
    }
    let primaries = [&h.partition_1, &h.partition_2, &h.partition_3, &h.partition_4];
    for sp in &t.partitions {
        let Some(n) = sfdisk_number(&sp.node).filter(|n| (1..=4).contains(n)) else { continue };
        let e = primaries[n as usize - 1];
        if (u64::from(e.starting_lba), u64::from(e.sectors)) != (sp.start, sp.size) || e.is_active() != sp.bootable {
            out.push(format!(
                "partition {n}: on disk start {} size {} boot {}, sfdisk start {} size {} boot {}",
                e.starting_lba,
                e.sectors,
                e.is_active(),
                sp.start,
                sp.size,
                sp.bootable
            ));
        }
        if u8::from_str_radix(&sp.type_id, 16).ok() != Some(e.sys) {
            out.push(format!("partition {n}: on-disk type {:02x}, sfdisk {}", e.sys, sp.type_id));
        }
    }
    out
}

/// `nvme0n1p2` on `nvme0n1` → 2; `sda10` on `sda` → 10.
pub fn partition_number(part: &str, disk: &str) -> Option<u32> {
    let rest = part.strip_prefix(disk)?;
    rest.strip_prefix('p').unwrap_or(rest).parse().ok()
}

fn dm_name(p: &Probe, kname: &str) -> String {
    p.read_trim(&format!("/sys/block/{kname}/dm/name")).or_else(|| p.devs.get(kname).map(|d| d.node.name.clone())).unwrap_or_else(|| kname.to_string())
}

/// Turn a device path from a tool (`/dev/vda3`, `/dev/mapper/cryptroot`,
/// `/dev/md/root`, `/dev/dm-2`) into the kernel name.
fn kname_of_path(p: &Probe, path: &str) -> Option<String> {
    if let Some(k) = p.devs.iter().find(|(_, d)| d.node.path == path).map(|(k, _)| k.clone()) {
        return Some(k);
    }
    if let Some(n) = path.strip_prefix("/dev/mapper/") {
        return p.devs.keys().find(|k| k.starts_with("dm-") && dm_name(p, k) == n).cloned();
    }
    if let Ok(t) = p.sys.read_link(path) {
        return Some(t.rsplit('/').next().unwrap_or("").to_string());
    }
    path.strip_prefix("/dev/").map(str::to_string).filter(|k| p.devs.contains_key(k))
}

fn capture_raid(p: &mut Probe, scope: &BTreeSet<String>, layout: &mut Layout) {
    let mds: Vec<String> = scope
        .iter()
        .filter(|k| k.starts_with("md") && p.devs.get(*k).is_some_and(|d| d.node.kind.starts_with("raid") || d.node.kind == "md" || d.node.kind == "linear"))
        .cloned()
        .collect();
    for md in mds {
        let path = format!("/dev/{md}");
        let export = match p.sys.run(&["mdadm", "--detail", "--export", &path]) {
            Ok(t) => parse::key_values(&t),
            Err(e) => {
                p.warn(format!("cannot read RAID array {path}: {e:#}; it is left out"));
                continue;
            }
        };
        let detail = p.sys.run(&["mdadm", "--detail", &path]).unwrap_or_default();
        let sys = |f: &str| format!("/sys/block/{md}/md/{f}");
        let mut members: Vec<(u32, String)> = Vec::new();
        let mut spares = Vec::new();
        for (k, v) in &export {
            let Some(dev_key) = k.strip_suffix("_ROLE") else { continue };
            let Some(dev) = export.get(&format!("{dev_key}_DEV")) else { continue };
            let Some(member) = kname_of_path(p, dev) else { continue };
            match v.parse::<u32>() {
                Ok(role) => members.push((role, member)),
                Err(_) => spares.push(member),
            }
        }
        members.sort();
        let chunk = p.read_trim(&sys("chunk_size")).and_then(|c| c.parse::<u64>().ok()).filter(|c| *c > 0);
        let layout_str = detail.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "Layout").then(|| {
                let v = v.trim();
                // `near=2` → `n2`, the form `mdadm --layout` takes; raid5 names stay.
                match v.split_once('=') {
                    Some((kind, n)) => format!("{}{}", &kind[..1], n),
                    None => v.to_string(),
                }
            })
        });
        let size = p.devs.get(&md).map(|d| d.node.size).unwrap_or(0);
        let level = export.get("MD_LEVEL").cloned().unwrap_or_default();
        p.ids.insert(md.clone(), md.clone());
        layout.raids.push(Raid {
            name: md.clone(),
            device_name: export.get("MD_DEVNAME").cloned().filter(|n| *n != md),
            level,
            metadata: export.get("MD_METADATA").cloned().unwrap_or_else(|| "1.2".into()),
            uuid: export.get("MD_UUID").cloned().unwrap_or_default(),
            array_name: export.get("MD_NAME").cloned(),
            chunk,
            raid_devices: export.get("MD_DEVICES").and_then(|n| n.parse().ok()).unwrap_or(members.len() as u32),
            layout: layout_str,
            size,
            devices: members.into_iter().map(|(_, m)| m).collect(),
            spares,
        });
    }
}

fn capture_luks(p: &mut Probe, scope: &BTreeSet<String>, layout: &mut Layout) {
    // Every in-scope device with a LUKS header; its open mapping (if any) is its child of type crypt.
    let candidates: Vec<String> = scope.iter().cloned().collect();
    for k in candidates {
        let b = p.blkid(&k);
        if b.get("TYPE").map(String::as_str) != Some("crypto_LUKS") {
            continue;
        }
        let dev_path = p.devs.get(&k).map(|d| d.node.path.clone()).unwrap_or(format!("/dev/{k}"));
        let mapping = p.devs.iter().find(|(_, d)| d.parents.contains(&k) && d.node.kind == "crypt").map(|(c, d)| (c.clone(), d.node.size));
        let dump = match p.sys.run(&["cryptsetup", "luksDump", &dev_path]) {
            Ok(t) => parse::luks_dump(&t),
            Err(e) => {
                p.warn(format!("cannot read the LUKS header of {dev_path}: {e:#}; it is left out"));
                continue;
            }
        };
        let version: u32 = dump.get("Version").and_then(|v| v.parse().ok()).unwrap_or(2);
        let uuid = dump.get("UUID").cloned().or_else(|| b.get("UUID").cloned()).unwrap_or_default();
        let no = |v: Option<&String>| v.cloned().filter(|s| !s.starts_with("(no "));
        let mut l = Luks {
            name: String::new(),
            device: p.ids.get(&k).cloned().unwrap_or(k.clone()),
            version,
            uuid: uuid.clone(),
            cipher: String::new(),
            key_size: 0,
            hash: None,
            pbkdf: None,
            label: no(dump.get("Label")),
            subsystem: no(dump.get("Subsystem")),
            sector_size: None,
            offset: None,
            size: mapping.as_ref().map(|m| m.1),
        };
        if version == 1 {
            l.cipher = format!(
                "{}-{}",
                dump.get("Cipher name").map(String::as_str).unwrap_or("aes"),
                dump.get("Cipher mode").map(String::as_str).unwrap_or("xts-plain64")
            );
            l.key_size = dump.get("MK bits").and_then(|v| v.parse().ok()).unwrap_or(256);
            l.hash = dump.get("Hash spec").cloned();
            l.pbkdf = Some("pbkdf2".into());
            l.offset = dump.get("Payload offset").and_then(|v| v.parse().ok());
        } else {
            match p
                .sys
                .run(&["cryptsetup", "luksDump", "--dump-json-metadata", &dev_path])
                .ok()
                .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            {
                Some(meta) => {
                    let seg = meta.pointer("/segments/0");
                    let slot = meta.get("keyslots").and_then(|k| k.as_object()).and_then(|o| o.values().next());
                    let num = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_u64().or_else(|| x.as_str().and_then(|s| s.parse().ok())));
                    l.cipher = seg.and_then(|s| s.get("encryption")).and_then(|e| e.as_str()).unwrap_or("aes-xts-plain64").to_string();
                    l.sector_size = num(seg.and_then(|s| s.get("sector_size"))).map(|v| v as u32);
                    l.offset = num(seg.and_then(|s| s.get("offset"))).map(|b| b / 512);
                    l.key_size = num(slot.and_then(|s| s.get("key_size"))).map(|b| b as u32 * 8).unwrap_or(512);
                    l.pbkdf = slot.and_then(|s| s.pointer("/kdf/type")).and_then(|t| t.as_str()).map(str::to_string);
                    l.hash = meta.pointer("/digests/0/hash").and_then(|h| h.as_str()).map(str::to_string);
                }
                None => {
                    l.cipher = dump.get("cipher").cloned().unwrap_or_else(|| "aes-xts-plain64".into());
                    l.key_size = dump.get("Key").and_then(|k| k.split_whitespace().next()?.parse().ok()).unwrap_or(512);
                    l.pbkdf = dump.get("PBKDF").cloned();
                    l.hash = dump.get("Hash").cloned();
                }
            }
        }
        l.name = match &mapping {
            Some((m, _)) => {
                let n = dm_name(p, m);
                p.ids.insert(m.clone(), n.clone());
                n
            }
            None => {
                p.warn(format!("LUKS volume on {dev_path} is not open; its contents are not captured (open it and capture again)"));
                format!("luks-{uuid}")
            }
        };
        layout.luks.push(l);
    }
}

fn capture_lvm(p: &mut Probe, scope: &BTreeSet<String>, layout: &mut Layout) {
    let has_pv = scope.iter().cloned().collect::<Vec<_>>().into_iter().any(|k| p.blkid(&k).get("TYPE").map(String::as_str) == Some("LVM2_member"));
    if !has_pv {
        return;
    }
    let units = ["--reportformat", "json", "--units", "b", "--nosuffix"];
    let run = |p: &mut Probe, kind: &str, fields: &str| -> Option<Vec<BTreeMap<String, String>>> {
        let sub = format!("{kind}s");
        let mut argv = vec!["lvm", sub.as_str()];
        if kind == "lv" {
            argv.push("-a");
        }
        argv.extend(units);
        argv.extend(["-o", fields]);
        match p.sys.run(&argv).and_then(|j| parse::lvm_report(&j, kind)) {
            Ok(r) => Some(r),
            Err(e) => {
                p.warn(format!("cannot read LVM ({e:#}); volume groups are left out"));
                None
            }
        }
    };
    let Some(pvs) = run(p, "pv", "pv_name,pv_uuid,vg_name,pv_size") else { return };
    let Some(vgs) = run(p, "vg", "vg_name,vg_uuid,vg_extent_size") else { return };
    let Some(lvs) = run(p, "lv", "lv_name,vg_name,lv_uuid,lv_size,segtype,stripes,stripe_size,lv_dm_path") else { return };
    // A VG is in scope when all its PVs are.
    type Row = BTreeMap<String, String>;
    let mut vg_pvs: BTreeMap<String, Vec<(String, Row)>> = BTreeMap::new();
    for pv in &pvs {
        let vg = pv.get("vg_name").cloned().unwrap_or_default();
        let k = pv.get("pv_name").and_then(|n| kname_of_path(p, n)).unwrap_or_default();
        vg_pvs.entry(vg).or_default().push((k, pv.clone()));
    }
    for (vg, members) in &vg_pvs {
        if vg.is_empty() || !members.iter().all(|(k, _)| scope.contains(k)) {
            continue;
        }
        let Some(v) = vgs.iter().find(|v| v.get("vg_name") == Some(vg)) else { continue };
        layout.lvm_vgs.push(LvmVg {
            name: vg.clone(),
            uuid: v.get("vg_uuid").cloned().unwrap_or_default(),
            extent_size: v.get("vg_extent_size").and_then(|s| s.parse().ok()).unwrap_or(4 << 20),
        });
        for (k, pv) in members {
            layout.lvm_pvs.push(LvmPv {
                device: p.ids.get(k).cloned().unwrap_or(k.clone()),
                uuid: pv.get("pv_uuid").cloned().unwrap_or_default(),
                vg: vg.clone(),
                size: pv.get("pv_size").and_then(|s| s.parse().ok()),
            });
        }
        let mut seen = BTreeSet::new();
        for lv in lvs.iter().filter(|l| l.get("vg_name") == Some(vg)) {
            let name = lv.get("lv_name").cloned().unwrap_or_default();
            // Hidden sub-volumes ([root_rimage_0], [pool_tmeta]) belong to their visible LV.
            if name.starts_with('[') || !seen.insert(name.clone()) {
                continue;
            }
            let segtype = lv.get("segtype").cloned().unwrap_or_else(|| "linear".into());
            if !matches!(segtype.as_str(), "linear" | "striped") {
                p.warn(format!("logical volume {vg}/{name} is of type `{segtype}`: recorded, but only linear and striped volumes are recreated exactly"));
            }
            let id = format!("{vg}/{name}");
            if let Some(dm) = lv.get("lv_dm_path").and_then(|d| kname_of_path(p, d)) {
                p.ids.insert(dm, id);
            }
            layout.lvm_lvs.push(LvmLv {
                vg: vg.clone(),
                name,
                uuid: lv.get("lv_uuid").cloned().unwrap_or_default(),
                size: lv.get("lv_size").and_then(|s| s.parse().ok()).unwrap_or(0),
                segment_type: segtype,
                stripes: lv.get("stripes").and_then(|s| s.parse().ok()).unwrap_or(1),
                stripe_size: lv.get("stripe_size").and_then(|s| s.parse().ok()).filter(|s: &u64| *s > 0),
            });
        }
    }
}

/// Filesystems and swap on every in-scope device that has a block id.
fn capture_contents(p: &mut Probe, scope: &BTreeSet<String>, layout: &mut Layout) {
    let mut btrfs_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut jobs: Vec<(usize, String, BTreeMap<String, String>)> = Vec::new();
    let ids: Vec<(String, String)> = scope.iter().filter_map(|k| p.ids.get(k).map(|id| (k.clone(), id.clone()))).collect();
    for (k, id) in ids {
        // A disk with a partition table holds no filesystem of its own.
        if layout.disk(&id).is_some_and(|d| d.table.is_some()) {
            continue;
        }
        let b = p.blkid(&k);
        let Some(t) = b.get("TYPE").cloned() else { continue };
        let path = p.devs.get(&k).map(|d| d.node.path.clone()).unwrap_or(format!("/dev/{k}"));
        let size = p.devs.get(&k).map(|d| d.node.size).unwrap_or(0);
        if t == "swap" {
            layout.swaps.push(Swap { device: id, uuid: b.get("UUID").cloned(), label: b.get("LABEL").cloned(), size: Some(size) });
            continue;
        }
        let Some(fstype) = FsType::parse(&t) else {
            if !matches!(t.as_str(), "crypto_LUKS" | "LVM2_member" | "linux_raid_member") {
                p.warn(format!("{path} holds a `{t}` filesystem, which rescue does not recreate; it is left out"));
            }
            continue;
        };
        let uuid = b.get("UUID").cloned().unwrap_or_default();
        if fstype == FsType::Btrfs {
            if let Some(&i) = btrfs_seen.get(&uuid) {
                layout.filesystems[i].extra_devices.push(id);
                continue;
            }
            btrfs_seen.insert(uuid.clone(), layout.filesystems.len());
        }
        let fs = Filesystem {
            device: id,
            fstype,
            uuid,
            label: b.get("LABEL").cloned().filter(|l| !l.is_empty()),
            used_bytes: 0,
            size: Some(size),
            extra_devices: Vec::new(),
            ext: None,
            xfs: None,
            vfat: None,
            btrfs: None,
        };
        jobs.push((layout.filesystems.len(), path.clone(), b.clone()));
        layout.filesystems.push(fs);
    }
    // The per-filesystem tools (dumpe2fs, xfs_info, btrfs) run in parallel.
    use rayon::prelude::*;
    let sys = p.sys;
    let done: Vec<(usize, Filesystem, Vec<String>)> = jobs
        .par_iter()
        .map(|(i, path, b)| {
            let mut fs = layout.filesystems[*i].clone();
            let w = fill_fs_options(sys, &mut fs, path, b);
            (*i, fs, w)
        })
        .collect();
    for (i, fs, warnings) in done {
        layout.filesystems[i] = fs;
        for w in warnings {
            p.warn(w);
        }
    }
}

/// Read the creation options of one filesystem with its own tool.
fn fill_fs_options(sys: &dyn SystemView, fs: &mut Filesystem, path: &str, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    let fstype = fs.fstype;
    match fstype {
        t if t.is_ext() => match sys.run(&["dumpe2fs", "-h", path]) {
            Ok(out) => {
                let m = parse::dumpe2fs(&out);
                let num = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
                let bs = num("Block size").unwrap_or(4096);
                let blocks = num("Block count").unwrap_or(0);
                let inodes = num("Inode count").unwrap_or(0);
                if blocks > 0 {
                    fs.size = Some(blocks * bs);
                    fs.used_bytes = blocks.saturating_sub(num("Free blocks").unwrap_or(0)) * bs;
                }
                fs.ext = Some(ExtOptions {
                    block_size: bs as u32,
                    inode_size: num("Inode size").unwrap_or(256) as u32,
                    inode_ratio: (inodes > 0).then(|| blocks * bs / inodes),
                    // State flags are not creation options.
                    features: m
                        .get("Filesystem features")
                        .map(|f| {
                            f.split_whitespace()
                                .filter(|x| !matches!(*x, "needs_recovery" | "orphan_present" | "orphan_file_present"))
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    reserved_percent: num("Reserved block count").filter(|_| blocks > 0).map(|r| ((r as f64 * 1000.0 / blocks as f64).round()) / 10.0),
                });
            }
            Err(e) => warnings.push(format!("cannot read ext options of {path}: {e:#}; default options will be used at recovery")),
        },
        FsType::Xfs => match sys.run(&["xfs_info", path]) {
            Ok(out) => {
                let m = parse::xfs_info(&out);
                let n = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                let bs = n("data.bsize");
                if bs > 0 && n("data.blocks") > 0 {
                    fs.size = Some(n("data.blocks") * bs);
                }
                fs.xfs = Some(XfsOptions {
                    block_size: bs as u32,
                    sector_size: n("meta-data.sectsz") as u32,
                    inode_size: n("meta-data.isize") as u32,
                    crc: n("meta-data.crc") == 1,
                    reflink: n("meta-data.reflink") == 1,
                    finobt: n("meta-data.finobt") == 1,
                    rmapbt: n("meta-data.rmapbt") == 1,
                    bigtime: n("meta-data.bigtime") == 1,
                    inobtcount: n("meta-data.inobtcount") == 1,
                    sparse: n("meta-data.sparse") == 1,
                    agcount: n("meta-data.agcount") as u32,
                    log_size: n("log.blocks") * n("log.bsize"),
                });
            }
            Err(e) => warnings.push(format!("cannot read xfs options of {path}: {e:#}; default options will be used at recovery")),
        },
        FsType::Vfat => {
            let fat_size = match b.get("VERSION").map(String::as_str) {
                Some("FAT12") => 12,
                Some("FAT16") => 16,
                _ => 32,
            };
            fs.vfat = Some(VfatOptions { fat_size, volume_id: fs.uuid.replace('-', ""), sectors_per_cluster: None });
        }
        FsType::Btrfs => {
            let (kv, features) = sys.run(&["btrfs", "inspect-internal", "dump-super", path]).map(|o| parse::btrfs_super(&o)).unwrap_or_default();
            if let Some(total) = kv.get("total_bytes").and_then(|v| v.parse().ok()) {
                fs.size = Some(total);
            }
            fs.btrfs = Some(BtrfsOptions {
                data_profile: "single".into(),
                metadata_profile: "dup".into(),
                node_size: kv.get("nodesize").and_then(|v| v.parse().ok()),
                sector_size: kv.get("sectorsize").and_then(|v| v.parse().ok()),
                features,
                subvolumes: Vec::new(),
                default_subvolume: None,
            });
        }
        _ => {}
    }
    warnings
}

fn capture_mounts(p: &mut Probe, opts: &CaptureOptions, scope: &BTreeSet<String>, layout: &mut Layout) {
    let root = opts.root.trim_end_matches('/').to_string();
    let Ok(mi) = p.sys.read("/proc/self/mountinfo") else {
        p.warn("cannot read /proc/self/mountinfo: no mount points recorded".into());
        return;
    };
    let fstab = p.sys.read(&format!("{root}/etc/fstab")).map(|t| parse::fstab(&t)).unwrap_or_default();
    let majmin: BTreeMap<String, String> = p.devs.iter().map(|(k, d)| (d.node.maj_min.clone(), k.clone())).collect();
    let mut btrfs_done = BTreeSet::new();
    let mount_scope = MountScope::new(&opts.exclude_mounts);
    for m in parse::mountinfo(&mi) {
        let Some(rel) = relative_to_root(&m.mount_point, &root) else { continue };
        let excluded = |reason: &str| Excluded { path: rel.clone(), fstype: Some(m.fstype.clone()), reason: reason.into() };
        match mount_scope.classify(&rel, &m.fstype) {
            // Recorded nowhere: it comes and goes, and holds nothing to recover.
            Some(NotRecovered::Pseudo) => continue,
            Some(why) => {
                layout.excluded.push(excluded(why.reason()));
                continue;
            }
            None => {}
        }
        // btrfs reports an anonymous device number: find the device by source path.
        let kname = majmin.get(&m.maj_min).cloned().or_else(|| kname_of_path(p, &m.source));
        let id = kname.as_ref().filter(|k| scope.contains(*k)).and_then(|k| p.ids.get(k).cloned());
        let Some(id) = id.filter(|id| layout.filesystem_on(id).is_some()) else {
            if kname.as_ref().is_some_and(|k| p.ids.get(k).is_some_and(|id| layout.swaps.iter().any(|s| &s.device == id))) {
                continue;
            }
            layout.excluded.push(excluded(if kname.is_some() { "not on a captured disk" } else { "not a block device filesystem" }));
            continue;
        };
        let is_btrfs = m.fstype == "btrfs";
        let subvol = is_btrfs.then(|| m.fs_root.trim_start_matches('/').to_string()).filter(|s| !s.is_empty());
        if !is_btrfs && m.fs_root != "/" {
            layout.excluded.push(excluded("bind mount"));
            continue;
        }
        if layout.mounts.iter().any(|x| x.path == rel) {
            continue; // over-mounted: the first is what fstab describes
        }
        let fs = layout.filesystem_on(&id).cloned();
        let entry = fstab.iter().find(|e| e.file == rel);
        let source = entry.map(|e| e.spec.clone()).unwrap_or_else(|| format!("UUID={}", fs.as_ref().map(|f| f.uuid.as_str()).unwrap_or("")));
        let options = entry
            .map(|e| e.options.split(',').filter(|o| !o.starts_with("subvol=") && !o.starts_with("subvolid=")).collect::<Vec<_>>().join(","))
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| "defaults".into());
        layout.mounts.push(Mount { path: rel.clone(), device: id.clone(), source, options, subvol });
        // Usage and (btrfs) subvolumes need the mounted filesystem.
        if let Ok((_, used)) = p.sys.statvfs(&m.mount_point) {
            if let Some(f) = layout.filesystems.iter_mut().find(|f| f.device == id) {
                f.used_bytes = f.used_bytes.max(used);
            }
        }
        if is_btrfs && btrfs_done.insert(id.clone()) {
            capture_btrfs_details(p, &m.mount_point, &id, layout);
        }
    }
    for f in layout.filesystems.clone() {
        if f.fstype == FsType::Btrfs && !btrfs_done.contains(&f.device) {
            p.warn(format!("btrfs filesystem on {} is not mounted: its subvolumes and profiles are not captured (mount it and capture again)", f.device));
        }
    }
}

fn capture_btrfs_details(p: &mut Probe, mnt: &str, id: &str, layout: &mut Layout) {
    let subs = p.sys.run(&["btrfs", "subvolume", "list", "-a", "-p", "-u", "-q", mnt]).map(|o| parse::btrfs_subvolumes(&o));
    let ro: BTreeSet<u64> = p
        .sys
        .run(&["btrfs", "subvolume", "list", "-a", "-r", mnt])
        .map(|o| parse::btrfs_subvolumes(&o).into_iter().map(|s| s.id).collect())
        .unwrap_or_default();
    let default = p.sys.run(&["btrfs", "subvolume", "get-default", mnt]).ok().and_then(|o| parse::btrfs_subvolumes(&o).into_iter().next());
    let profiles = p.sys.run(&["btrfs", "filesystem", "df", "-b", mnt]).map(|o| parse::btrfs_profiles(&o)).unwrap_or((None, None));
    let subs = match subs {
        Ok(s) => s,
        Err(e) => {
            p.warn(format!("cannot list btrfs subvolumes under {mnt}: {e:#}"));
            Vec::new()
        }
    };
    if let Some(b) = layout.filesystems.iter_mut().find(|f| f.device == id).and_then(|f| f.btrfs.as_mut()) {
        b.subvolumes = subs
            .iter()
            .map(|s| Subvolume { id: s.id, path: s.path.clone(), uuid: s.uuid.clone(), readonly: ro.contains(&s.id), snapshot: s.parent_uuid.is_some() })
            .collect();
        b.default_subvolume = default.filter(|d| d.id != 5).map(|d| d.path);
        if let Some(d) = profiles.0 {
            b.data_profile = d;
        }
        if let Some(m) = profiles.1 {
            b.metadata_profile = m;
        }
    }
}

fn capture_bootloader(p: &mut Probe, opts: &CaptureOptions, disks: &BTreeSet<String>, layout: &mut Layout) {
    let root = opts.root.trim_end_matches('/');
    let grub_dir = [format!("{root}/boot/grub"), format!("{root}/boot/grub2")].into_iter().find(|d| p.sys.exists(d));
    const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    if layout.host.firmware == Firmware::Uefi {
        let mut bl = Bootloader::default();
        match p.sys.run(&["efibootmgr", "-v"]) {
            Ok(out) => {
                let (current, entries) = parse::efibootmgr(&out);
                let cur = entries.iter().find(|e| Some(&e.num) == current.as_ref()).cloned();
                if let Some(c) = &cur {
                    bl.loader = c.path.clone();
                    bl.esp = c.partuuid.as_ref().and_then(|u| layout.partitions.iter().find(|p| p.uuid.as_deref() == Some(u.as_str()))).map(|p| p.name.clone());
                }
                bl.efi_entries = entries
                    .into_iter()
                    .filter(|e| e.partuuid.is_some())
                    .map(|e| EfiEntry { num: e.num, label: e.label, partuuid: e.partuuid, path: e.path, active: e.active })
                    .collect();
            }
            Err(e) => p.warn(format!("cannot read UEFI boot entries: {e:#}")),
        }
        if bl.esp.is_none() {
            bl.esp = layout
                .partitions
                .iter()
                .filter(|p| p.type_id == ESP_TYPE)
                .find(|p| layout.mounts.iter().any(|m| m.device == p.name && (m.path == "/boot/efi" || m.path == "/efi" || m.path == "/boot")))
                .or_else(|| layout.partitions.iter().find(|p| p.type_id == ESP_TYPE))
                .map(|p| p.name.clone());
        }
        if bl.loader.is_none() {
            // Booted from elsewhere (a rescue stick, another disk): the loader is
            // the one the entries pointing at the captured ESP name.
            let esp_uuid = bl.esp.as_ref().and_then(|e| layout.partitions.iter().find(|p| &p.name == e)).and_then(|p| p.uuid.clone());
            bl.loader = bl
                .efi_entries
                .iter()
                .filter(|e| e.partuuid.is_some() && e.partuuid.as_deref().map(str::to_uppercase) == esp_uuid.as_deref().map(str::to_uppercase))
                .find(|e| e.active)
                .and_then(|e| e.path.clone());
        }
        let loader = bl.loader.clone().unwrap_or_default().to_lowercase();
        bl.kind = if loader.contains("systemd")
            || p.sys.exists(&format!("{root}/boot/efi/loader/loader.conf"))
            || p.sys.exists(&format!("{root}/efi/loader/loader.conf"))
        {
            BootloaderKind::SystemdBoot
        } else if grub_dir.is_some() || loader.contains("grub") || loader.contains("shim") {
            BootloaderKind::Grub2Efi
        } else {
            BootloaderKind::None
        };
        bl.shim = loader.contains("shim");
        if bl.esp.is_none() && bl.kind != BootloaderKind::None {
            p.warn("UEFI system but no EFI system partition found on the captured disks".into());
        }
        layout.bootloader = bl;
        return;
    }
    // BIOS: GRUB's boot.img carries the string "GRUB" in the MBR.
    let mut boot_disks = Vec::new();
    for d in disks {
        let path = layout.disk(d).map(|x| x.path.clone()).unwrap_or(format!("/dev/{d}"));
        if let Ok(head) = p.sys.read_head(&path, 512) {
            if head.windows(4).any(|w| w == b"GRUB") {
                boot_disks.push(d.clone());
            }
        }
    }
    let kind = if !boot_disks.is_empty() || grub_dir.as_ref().is_some_and(|g| p.sys.exists(&format!("{g}/i386-pc"))) {
        BootloaderKind::Grub2Bios
    } else {
        BootloaderKind::None
    };
    if kind == BootloaderKind::Grub2Bios && boot_disks.is_empty() {
        p.warn("GRUB for BIOS is installed but no captured disk carries its boot code; recovery will install it on the disk holding /boot".into());
    }
    layout.bootloader = Bootloader { kind, boot_disks, ..Default::default() };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partition_numbers_for_every_naming() {
        assert_eq!(partition_number("sda1", "sda"), Some(1));
        assert_eq!(partition_number("sda12", "sda"), Some(12));
        assert_eq!(partition_number("nvme0n1p2", "nvme0n1"), Some(2));
        assert_eq!(partition_number("loop0p5", "loop0"), Some(5));
        assert_eq!(partition_number("mmcblk0p1", "mmcblk0"), Some(1));
        assert_eq!(partition_number("md0p1", "md0"), Some(1));
        assert_eq!(partition_number("sdb1", "sda"), None);
    }

    #[test]
    fn root_relative_paths() {
        assert_eq!(relative_to_root("/mnt/t", "/mnt/t").as_deref(), Some("/"));
        assert_eq!(relative_to_root("/mnt/t/home", "/mnt/t/").as_deref(), Some("/home"));
        assert_eq!(relative_to_root("/mnt/tx", "/mnt/t"), None);
        assert_eq!(relative_to_root("/home", "/").as_deref(), Some("/home"));
    }
}
