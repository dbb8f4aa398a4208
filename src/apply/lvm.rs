//! LVM with the recorded UUIDs.
//!
//! `pvcreate --uuid` sets a PV's UUID, but neither `vgcreate` nor `lvcreate`
//! can set a VG or LV UUID (`vgchange --uuid` only makes a random one). The
//! way LVM itself restores identities is `vgcfgrestore` from a metadata file,
//! so we write that file: the VG with its recorded UUID and extent size, its
//! PVs (with the `pe_start` and size LVM reports for them), and the LVs: a
//! linear LV takes the first free extents over the PVs in order, a striped LV
//! one free run of equal length on each of as many PVs as it has stripes.
//! Each `CreateLv` rewrites the file with one more LV and restores it again,
//! so a failure names the LV.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cmd::Cmd;

/// `lvm` (all LVM commands go through it), quiet about descriptors it inherits.
pub fn lvm_cmd() -> Cmd {
    Cmd::new("lvm").env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

#[derive(Debug, Clone)]
pub struct PvState {
    pub device: PathBuf,
    pub uuid: String,
    /// Sectors (512 bytes).
    pub dev_size: u64,
    pub pe_start: u64,
    pub pe_count: u64,
}

/// One segment of an LV: `extents` on each of its areas (one area when linear, one per stripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Extents per area.
    pub extents: u64,
    /// (pv index, first extent on that PV)
    pub areas: Vec<(usize, u64)>,
    /// Stripe size in 512-byte sectors (striped segments).
    pub stripe_sectors: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LvState {
    pub name: String,
    pub uuid: String,
    pub segments: Vec<Segment>,
}

/// A VG being built.
#[derive(Debug, Clone)]
pub struct VgState {
    pub name: String,
    pub uuid: String,
    /// Extent size in 512-byte sectors.
    pub extent_sectors: u64,
    pub pvs: Vec<PvState>,
    pub lvs: Vec<LvState>,
    pub seqno: u64,
}

#[derive(Deserialize)]
struct PvsReport {
    report: Vec<PvsInner>,
}
#[derive(Deserialize)]
struct PvsInner {
    pv: Vec<PvRow>,
}
#[derive(Deserialize)]
struct PvRow {
    pv_name: String,
    pe_start: String,
    dev_size: String,
}

/// Where each PV's data area starts and how big the device is, as LVM sees it.
pub fn pv_geometry(devices: &[PathBuf]) -> Result<Vec<(u64, u64)>> {
    let out = crate::apply::lvm::lvm_cmd()
        .args(["pvs", "--reportformat", "json", "--units", "s", "--nosuffix", "-o", "pv_name,pe_start,dev_size"])
        .args(devices)
        .read()?;
    let rep: PvsReport = serde_json::from_str(&out).context("parsing `lvm pvs --reportformat json`")?;
    let rows: Vec<PvRow> = rep.report.into_iter().flat_map(|r| r.pv).collect();
    devices
        .iter()
        .map(|d| {
            let row = rows.iter().find(|r| Path::new(&r.pv_name) == d).with_context(|| format!("LVM does not report {} as a physical volume", d.display()))?;
            let n = |s: &str| s.trim().parse::<u64>().with_context(|| format!("bad number {s:?} from lvm pvs"));
            Ok((n(&row.pe_start)?, n(&row.dev_size)?))
        })
        .collect()
}

impl VgState {
    pub fn new(name: &str, uuid: &str, extent_size: u64, pvs: Vec<(PathBuf, String, u64, u64)>) -> Result<VgState> {
        let extent_sectors = extent_size / 512;
        if extent_sectors == 0 {
            bail!("volume group {name}: extent size {extent_size} is too small");
        }
        let pvs = pvs
            .into_iter()
            .map(|(device, uuid, pe_start, dev_size)| PvState {
                pe_count: dev_size.saturating_sub(pe_start) / extent_sectors,
                device,
                uuid,
                dev_size,
                pe_start,
            })
            .collect();
        Ok(VgState { name: name.into(), uuid: uuid.into(), extent_sectors, pvs, lvs: Vec::new(), seqno: 0 })
    }

    /// The free runs (first extent, count) on PV `pv`, in order.
    fn free_on(&self, pv: usize) -> Vec<(u64, u64)> {
        let mut used: Vec<(u64, u64)> =
            self.lvs.iter().flat_map(|l| l.segments.iter()).flat_map(|s| s.areas.iter().filter(|a| a.0 == pv).map(|a| (a.1, s.extents))).collect();
        used.sort();
        let mut cursor = 0;
        let mut free = Vec::new();
        for (s, n) in used {
            if s > cursor {
                free.push((cursor, s - cursor));
            }
            cursor = cursor.max(s + n);
        }
        if self.pvs[pv].pe_count > cursor {
            free.push((cursor, self.pvs[pv].pe_count - cursor));
        }
        free
    }

    /// Allocate an LV of `size` bytes: linearly, first free extents first, when
    /// `stripes` is 0 or 1; else striped over the first `stripes` PVs that each
    /// have one free run long enough, with `stripe_size` bytes per stripe (the
    /// plan checked it: `LvmLv::stripe_problem`).
    pub fn add_lv(&mut self, name: &str, uuid: &str, size: u64, stripes: u32, stripe_size: u64) -> Result<()> {
        let need = size.div_ceil(self.extent_sectors * 512);
        let segments = if stripes <= 1 { self.linear(name, need)? } else { vec![self.striped(name, need, stripes, stripe_size)?] };
        self.lvs.push(LvState { name: name.into(), uuid: uuid.into(), segments });
        Ok(())
    }

    fn linear(&self, name: &str, mut need: u64) -> Result<Vec<Segment>> {
        let mut segments = Vec::new();
        for i in 0..self.pvs.len() {
            for (s, n) in self.free_on(i) {
                if need == 0 {
                    break;
                }
                let take = n.min(need);
                segments.push(Segment { extents: take, areas: vec![(i, s)], stripe_sectors: None });
                need -= take;
            }
        }
        if need > 0 {
            bail!("volume group {} has {} too few free extents for logical volume {name}", self.name, need);
        }
        Ok(segments)
    }

    fn striped(&self, name: &str, need: u64, stripes: u32, stripe_size: u64) -> Result<Segment> {
        let per = need.div_ceil(u64::from(stripes));
        let areas: Vec<(usize, u64)> =
            (0..self.pvs.len()).filter_map(|i| self.free_on(i).into_iter().find(|f| f.1 >= per).map(|f| (i, f.0))).take(stripes as usize).collect();
        if areas.len() < stripes as usize {
            bail!(
                "volume group {}: logical volume {name} has {stripes} stripes of {per} extents, but only {} physical volume(s) have that many free extents in one run",
                self.name,
                areas.len()
            );
        }
        Ok(Segment { extents: per, areas, stripe_sectors: Some(stripe_size / 512) })
    }

    /// The VG in LVM's text metadata format, as `vgcfgbackup` writes it.
    pub fn metadata(&self) -> String {
        let mut s = String::new();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let _ = writeln!(s, "{} {{", self.name);
        let _ = writeln!(s, "\tid = \"{}\"", self.uuid);
        let _ = writeln!(s, "\tseqno = {}", self.seqno + 1);
        let _ = writeln!(s, "\tformat = \"lvm2\"");
        let _ = writeln!(s, "\tstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]");
        let _ = writeln!(s, "\tflags = []");
        let _ = writeln!(s, "\textent_size = {}", self.extent_sectors);
        let _ = writeln!(s, "\tmax_lv = 0\n\tmax_pv = 0\n\tmetadata_copies = 0\n");
        let _ = writeln!(s, "\tphysical_volumes {{");
        for (i, pv) in self.pvs.iter().enumerate() {
            let _ = writeln!(s, "\t\tpv{i} {{");
            let _ = writeln!(s, "\t\t\tid = \"{}\"", pv.uuid);
            let _ = writeln!(s, "\t\t\tdevice = \"{}\"", pv.device.display());
            let _ = writeln!(s, "\t\t\tstatus = [\"ALLOCATABLE\"]\n\t\t\tflags = []");
            let _ = writeln!(s, "\t\t\tdev_size = {}", pv.dev_size);
            let _ = writeln!(s, "\t\t\tpe_start = {}", pv.pe_start);
            let _ = writeln!(s, "\t\t\tpe_count = {}", pv.pe_count);
            let _ = writeln!(s, "\t\t}}");
        }
        let _ = writeln!(s, "\t}}");
        if !self.lvs.is_empty() {
            let _ = writeln!(s, "\n\tlogical_volumes {{");
            for lv in &self.lvs {
                let _ = writeln!(s, "\t\t{} {{", lv.name);
                let _ = writeln!(s, "\t\t\tid = \"{}\"", lv.uuid);
                let _ = writeln!(s, "\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []");
                let _ = writeln!(s, "\t\t\tcreation_time = {now}\n\t\t\tcreation_host = \"rescue\"");
                let _ = writeln!(s, "\t\t\tsegment_count = {}", lv.segments.len());
                let mut start = 0;
                for (k, seg) in lv.segments.iter().enumerate() {
                    let n = seg.extents * seg.areas.len() as u64;
                    let _ = writeln!(s, "\n\t\t\tsegment{} {{", k + 1);
                    let _ = writeln!(s, "\t\t\t\tstart_extent = {start}\n\t\t\t\textent_count = {n}");
                    let _ = writeln!(s, "\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = {}", seg.areas.len());
                    if let (Some(ss), true) = (seg.stripe_sectors, seg.areas.len() > 1) {
                        let _ = writeln!(s, "\t\t\t\tstripe_size = {ss}");
                    }
                    let areas: Vec<String> = seg.areas.iter().map(|(pv, pe)| format!("\t\t\t\t\t\"pv{pv}\", {pe}")).collect();
                    let _ = writeln!(s, "\t\t\t\tstripes = [\n{}\n\t\t\t\t]", areas.join(",\n"));
                    let _ = writeln!(s, "\t\t\t}}");
                    start += n;
                }
                let _ = writeln!(s, "\t\t}}");
            }
            let _ = writeln!(s, "\t}}");
        }
        let _ = writeln!(s, "}}");
        let _ = writeln!(s, "contents = \"Text Format Volume Group\"\nversion = 1\n");
        let _ = writeln!(s, "description = \"Written by rescue recover\"\n");
        let _ = writeln!(s, "creation_host = \"rescue\"\ncreation_time = {now}");
        s
    }

    /// Write the metadata and restore it onto the PVs.
    pub fn restore(&mut self, dir: &Path) -> Result<()> {
        let file = dir.join(format!("{}.vg", self.name));
        std::fs::write(&file, self.metadata()).with_context(|| format!("writing {}", file.display()))?;
        crate::apply::lvm::lvm_cmd().args(["vgcfgrestore", "--file"]).arg(&file).arg(&self.name).run()?;
        self.seqno += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvs_are_allocated_linearly_across_pvs() {
        let mut vg = VgState::new(
            "vg0",
            "Ab1cDe-2FgH-3iJk-4LmN-5oPq-6RsT-7uVwXy",
            4 << 20,
            vec![("/dev/a".into(), "U1".into(), 2048, 2048 + 8192 * 10), ("/dev/b".into(), "U2".into(), 2048, 2048 + 8192 * 10)],
        )
        .unwrap();
        assert_eq!(vg.pvs[0].pe_count, 10);
        vg.add_lv("root", "L1", 6 * (4 << 20), 1, 0).unwrap();
        vg.add_lv("home", "L2", 8 * (4 << 20), 1, 0).unwrap();
        let areas: Vec<_> = vg.lvs[1].segments.iter().map(|s| (s.areas.clone(), s.extents)).collect();
        assert_eq!(areas, vec![(vec![(0, 6)], 4), (vec![(1, 0)], 4)]);
        assert!(vg.add_lv("big", "L3", 7 * (4 << 20), 1, 0).is_err());
        let m = vg.metadata();
        assert!(m.contains("id = \"Ab1cDe-2FgH-3iJk-4LmN-5oPq-6RsT-7uVwXy\""), "{m}");
        assert!(m.contains("extent_size = 8192"), "{m}");
        assert!(m.contains("\"pv1\", 0"), "{m}");
        assert!(m.contains("segment_count = 2"), "{m}");
        assert!(!m.contains("stripe_size"), "{m}");
    }

    #[test]
    fn striped_lvs_take_one_run_on_each_of_their_pvs() {
        let pv = |d: &str, u: &str| (PathBuf::from(d), u.to_string(), 2048, 2048 + 8192 * 10);
        let mut vg = VgState::new("vg0", "V", 4 << 20, vec![pv("/dev/a", "U1"), pv("/dev/b", "U2"), pv("/dev/c", "U3")]).unwrap();
        vg.add_lv("lin", "L0", 7 * (4 << 20), 1, 0).unwrap();
        // 7 extents over 2 stripes: 4 per stripe (LVM rounds up the same way). PV a has
        // only 3 free, so the stripes go on b and c.
        vg.add_lv("fast", "L1", 7 * (4 << 20), 2, 64 << 10).unwrap();
        assert_eq!(vg.lvs[1].segments, vec![Segment { extents: 4, areas: vec![(1, 0), (2, 0)], stripe_sectors: Some(128) }]);
        let m = vg.metadata();
        assert!(m.contains("extent_count = 8\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 2\n\t\t\t\tstripe_size = 128\n"), "{m}");
        assert!(m.contains("\"pv1\", 0,\n\t\t\t\t\t\"pv2\", 0\n"), "{m}");
        // Three stripes of 4 do not fit: a has 3 free extents.
        let e = vg.add_lv("wide", "L2", 12 * (4 << 20), 3, 64 << 10).unwrap_err().to_string();
        assert!(e.contains("3 stripes of 4 extents, but only 2 physical volume(s)"), "{e}");
    }
}
