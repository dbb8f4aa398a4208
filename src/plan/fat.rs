//! Which FAT a recreated vfat filesystem gets, so that its FAT type is valid
//! for its cluster count on the target's sector size.
//!
//! Firmware (and every FAT driver) decides the FAT type from the cluster
//! count alone: fewer than 4,085 clusters is FAT12, fewer than 65,525 FAT16,
//! the rest FAT32. A FAT32 made with fewer clusters is read as FAT16 and does
//! not boot. A recorded FAT32 ESP of 200 MiB has 400,000 clusters of 512
//! bytes on a 512-byte-sector disk but only 51,000 of 4 KiB on a 4Kn disk
//! (a cluster is at least one sector), which is why 260 MiB is the smallest
//! FAT32 ESP on 4Kn disks.
//!
//! The plan computes the whole geometry here and passes it to `mkfs.fat`
//! (`-F`, `-S`, `-s`, `-g`), so what is made is what was computed:
//! [`clusters`] follows `mkfs.fat`'s own arithmetic (dosfstools 4.2), and a
//! test checks it against the real tool on 512- and 4096-byte-sector loop
//! devices.

use serde::Serialize;

use crate::util::human_bytes;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The fewest clusters a FAT16 may have (fewer is FAT12).
pub const MIN_FAT16_CLUSTERS: u64 = 4_085;
/// The fewest clusters a FAT32 may have (fewer is FAT16).
pub const MIN_FAT32_CLUSTERS: u64 = 65_525;
/// `mkfs.fat` addresses at most these FAT12/FAT16 clusters (a little below
/// the specification's 4,084 and 65,524), two fewer with the reserved
/// entries, and warns about a FAT32 with fewer than its 65,529.
const ADDRESSABLE_FAT12: u64 = 4_080;
const ADDRESSABLE_FAT16: u64 = 65_520;
const MKFS_MIN_FAT32_CLUSTERS: u64 = 65_529;
/// Larger clusters are outside the FAT specification.
const MAX_CLUSTER_BYTES: u64 = 32 * KIB;
/// The smallest FAT32 ESP on a 4Kn disk (Microsoft's figure: 65,525
/// clusters of 4 KiB and the FATs). An ESP that must grow grows to this.
pub const ESP_MIN_BYTES: u64 = 260 * MIB;
/// The disk geometry passed to `mkfs.fat -g` (heads/sectors per track):
/// without it `mkfs.fat` guesses one from the device and rounds the
/// filesystem down to whole tracks of the guess.
pub const GEOMETRY_HEADS: u64 = 64;
pub const GEOMETRY_SECTORS: u64 = 32;
/// `mkfs.fat`'s defaults: two FATs, 512 root directory entries on FAT12/16,
/// 32 reserved sectors on FAT32 and one on FAT12/16.
const FATS: u64 = 2;
const ROOT_ENTRIES: u64 = 512;

/// The vfat filesystem as it is made: every `mkfs.fat` geometry option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FatFormat {
    /// 12, 16 or 32.
    pub fat_size: u32,
    /// Logical sector size of the filesystem (the device's).
    pub sector_size: u64,
    pub sectors_per_cluster: u64,
    /// Data clusters `mkfs.fat` makes.
    pub clusters: u64,
}

impl FatFormat {
    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * self.sector_size
    }
}

impl std::fmt::Display for FatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FAT{} with {} clusters of {}", self.fat_size, thousands(self.clusters), human_bytes(self.cluster_bytes()))
    }
}

/// `12345` -> `12,345`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether firmware reads a FAT of `clusters` clusters as FAT`fat_size`
/// (and `mkfs.fat` makes it without complaint).
pub fn valid(fat_size: u32, clusters: u64) -> bool {
    match fat_size {
        12 => (1..=ADDRESSABLE_FAT12 - 2).contains(&clusters),
        16 => (MIN_FAT16_CLUSTERS..=ADDRESSABLE_FAT16 - 2).contains(&clusters),
        32 => clusters >= MIN_FAT32_CLUSTERS.max(MKFS_MIN_FAT32_CLUSTERS),
        _ => false,
    }
}

/// Round `n` up to a multiple of `to` (a power of two) when the structures
/// are aligned to clusters, as `mkfs.fat` does for all but floppy sizes.
fn align(n: u64, to: u64, aligned: bool) -> u64 {
    if aligned {
        n.div_ceil(to) * to
    } else {
        n
    }
}

/// The data clusters of `mkfs.fat -F fat_size -S sector -s spc -g 64/32`
/// on `bytes` bytes (dosfstools 4.2 `setup_tables`); `None` when `mkfs.fat`
/// refuses the combination (more clusters than the FAT can address).
pub fn clusters(bytes: u64, sector: u64, fat_size: u32, spc: u64) -> Option<u64> {
    let sector = sector.max(512);
    let spc = spc.max(1);
    let total = bytes / sector;
    let sectors = total - total % GEOMETRY_SECTORS;
    let aligned = sectors > 8192;
    let reserved = if fat_size == 32 { 32 } else { 1 };
    let fatdata32 = sectors.checked_sub(align(reserved, spc, aligned))?;
    match fat_size {
        32 => {
            let guess = (fatdata32 * sector + FATS * 8) / (spc * sector + FATS * 4);
            let fat_len = align((guess + 2) * 4, sector, true) / sector;
            let fat_len = align(fat_len, spc, aligned);
            let n = fatdata32.checked_sub(FATS * fat_len)? / spc;
            (n <= fat_len * sector / 4).then_some(n)
        }
        12 | 16 => {
            let root = (ROOT_ENTRIES * 32).div_ceil(sector);
            let fatdata = fatdata32.checked_sub(align(root, spc, aligned))?;
            let (guess, fat_bytes): (u64, fn(u64) -> u64) = if fat_size == 16 {
                ((fatdata * sector + FATS * 4) / (spc * sector + FATS * 2), |c| (c + 2) * 2)
            } else {
                (2 * (fatdata * sector + FATS * 3) / (2 * spc * sector + FATS * 3), |c| ((c + 2) * 3 + 1) >> 1)
            };
            let fat_len = align(fat_bytes(guess).div_ceil(sector), spc, aligned);
            let n = fatdata.checked_sub(FATS * fat_len)? / spc;
            let addressable = if fat_size == 16 { (fat_len * sector / 2).min(ADDRESSABLE_FAT16) } else { (fat_len * sector * 2 / 3).min(ADDRESSABLE_FAT12) };
            (n + 2 <= addressable).then_some(n)
        }
        _ => None,
    }
}

/// The cluster size `mkfs.fat` picks on a 512-byte-sector disk when not
/// told (what the recorded filesystem most likely has): for FAT32 by size
/// as Microsoft's format does, 2 KiB to start with for FAT12/16.
fn default_cluster_bytes(fat_size: u32, bytes: u64) -> u64 {
    if fat_size != 32 {
        return 2 * KIB;
    }
    match bytes / MIB {
        0..=260 => 512,
        261..=8192 => 4 * KIB,
        8193..=16384 => 8 * KIB,
        16385..=32768 => 16 * KIB,
        _ => 32 * KIB,
    }
}

/// The FAT to make on `bytes` bytes with `sector`-byte sectors for a
/// filesystem recorded as FAT`recorded` (clusters of `cluster_bytes` when
/// recorded): the recorded type when some cluster size gives it a valid
/// cluster count (the recorded or usual cluster size first, then smaller,
/// then larger ones), else the type the cluster count implies. `None` when
/// no FAT fits (a device of a few sectors).
pub fn choose(recorded: u32, cluster_bytes: Option<u64>, bytes: u64, sector: u64) -> Option<FatFormat> {
    let sector = sector.max(512);
    let types = std::iter::once(recorded).chain([16, 32, 12].into_iter().filter(|t| *t != recorded));
    for fat_size in types {
        let wanted = if fat_size == recorded { cluster_bytes } else { None };
        let first = wanted.unwrap_or_else(|| default_cluster_bytes(fat_size, bytes)).clamp(sector, MAX_CLUSTER_BYTES).next_power_of_two();
        let smaller = std::iter::successors(Some(first), |c| (*c / 2 >= sector).then_some(*c / 2));
        let larger = std::iter::successors(Some(first * 2), |c| (*c * 2 <= MAX_CLUSTER_BYTES).then_some(*c * 2)).filter(|c| *c <= MAX_CLUSTER_BYTES);
        for cb in smaller.chain(larger) {
            let spc = cb / sector;
            if let Some(n) = clusters(bytes, sector, fat_size, spc).filter(|n| valid(fat_size, *n)) {
                return Some(FatFormat { fat_size, sector_size: sector, sectors_per_cluster: spc, clusters: n });
            }
        }
    }
    None
}

/// The smallest size (whole MiB) on which a FAT32 with one-sector clusters
/// has enough clusters, on `sector`-byte sectors.
pub fn fat32_min_bytes(sector: u64) -> u64 {
    let mut mib = 1;
    while !clusters(mib * MIB, sector, 32, 1).is_some_and(|n| valid(32, n)) {
        mib += 1;
    }
    mib * MIB
}

/// The size an ESP recorded as FAT32 must grow to on `sector`-byte sectors,
/// when its `bytes` cannot hold a valid FAT32 there; `None` when they can.
/// On 4Kn that is [`ESP_MIN_BYTES`]; on 512-byte sectors (where only ESPs
/// under about 33 MiB are too small) the smallest size that holds one.
pub fn esp_needs(bytes: u64, sector: u64) -> Option<u64> {
    let fits = clusters(bytes, sector, 32, 1).is_some_and(|n| valid(32, n));
    let least = if sector >= 4096 { ESP_MIN_BYTES } else { 0 };
    (!fits).then(|| least.max(fat32_min_bytes(sector)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The rule at the sizes the issue names, on both sector sizes. The
    /// cluster counts are those `mkfs.fat` 4.2 made on loop devices
    /// (`tests/apply_loop.rs` checks them against the tool itself).
    #[test]
    fn fat_type_and_esp_size_at_100_200_260_and_512_mib() {
        let fat32 = |mib: u64, sector: u64| choose(32, None, mib * MIB, sector).unwrap();
        // 512-byte sectors: FAT32 of 512-byte clusters up to 260 MiB, 4 KiB above.
        for (mib, spc) in [(100, 1), (200, 1), (260, 1), (512, 8)] {
            let f = fat32(mib, 512);
            assert_eq!((f.fat_size, f.sector_size, f.sectors_per_cluster), (32, 512, spc), "{mib} MiB: {f}");
            assert!(f.clusters >= MIN_FAT32_CLUSTERS, "{mib} MiB: {f}");
            assert_eq!(esp_needs(mib * MIB, 512), None, "{mib} MiB on 512");
        }
        // 4096-byte sectors: a cluster is at least 4 KiB, so 100 and 200 MiB are too small for FAT32.
        for mib in [100, 200] {
            let f = fat32(mib, 4096);
            assert_eq!((f.fat_size, f.sectors_per_cluster), (16, 1), "{mib} MiB: {f}");
            assert!(valid(16, f.clusters), "{f}");
            assert_eq!(esp_needs(mib * MIB, 4096), Some(260 * MIB), "{mib} MiB on 4Kn");
        }
        assert_eq!(fat32(200, 4096).clusters, 51_145);
        for mib in [260, 512] {
            let f = fat32(mib, 4096);
            assert_eq!((f.fat_size, f.sectors_per_cluster), (32, 1), "{mib} MiB: {f}");
            assert!(f.clusters >= MIN_FAT32_CLUSTERS, "{f}");
            assert_eq!(esp_needs(mib * MIB, 4096), None);
        }
        assert_eq!(fat32(260, 4096).clusters, 66_398);
        // The grown ESP holds a FAT32.
        assert!((256 * MIB..=ESP_MIN_BYTES).contains(&fat32_min_bytes(4096)), "{}", fat32_min_bytes(4096) / MIB);
        assert!(fat32_min_bytes(512) < 40 * MIB, "{}", fat32_min_bytes(512) / MIB);
        // A 32 MiB FAT32 (made with mkfs.fat -F 32, which warns) grows just enough on 512-byte sectors.
        assert_eq!(esp_needs(32 * MIB, 512), Some(fat32_min_bytes(512)));
        assert_eq!(esp_needs(32 * MIB, 4096), Some(260 * MIB));
    }

    /// `mkfs.fat -F F -S S -s N -g 64/32` made these on loop devices (`fsck.fat -v`).
    #[test]
    fn cluster_counts_are_those_mkfs_fat_makes() {
        let made = [
            (100, 512, 32, 1, Some(201_616)),
            (200, 512, 16, 8, Some(51_145)),
            (260, 512, 32, 1, Some(524_256)),
            (260, 512, 16, 8, None),
            (512, 512, 32, 8, Some(130_812)),
            (100, 4096, 32, 1, Some(25_518)),
            (100, 4096, 16, 1, Some(25_569)),
            (200, 4096, 32, 1, Some(51_068)),
            (200, 4096, 16, 1, Some(51_145)),
            (260, 4096, 32, 1, Some(66_398)),
            (260, 4096, 16, 1, None),
            (512, 4096, 32, 1, Some(130_784)),
        ];
        for (mib, sector, fat_size, spc, want) in made {
            assert_eq!(clusters(mib * MIB, sector, fat_size, spc), want, "{mib} MiB, {sector}-byte sectors, FAT{fat_size}, {spc} sectors per cluster");
        }
    }

    #[test]
    fn never_a_fat32_with_too_few_clusters() {
        for sector in [512, 4096] {
            for mib in 1..=1100 {
                if let Some(f) = choose(32, None, mib * MIB, sector) {
                    assert!(valid(f.fat_size, f.clusters), "{mib} MiB on {sector}: {f}");
                    assert_eq!(f.fat_size == 32, f.clusters >= MIN_FAT32_CLUSTERS, "{mib} MiB on {sector}: {f}");
                }
            }
        }
    }

    #[test]
    fn a_recorded_cluster_size_is_kept_when_valid_and_given_up_when_not() {
        // 32 KiB clusters recorded (a 4Kn source's 8 sectors of 4 KiB): on 512 MiB that is 16,380 clusters, too few.
        let f = choose(32, Some(32 * KIB), 512 * MIB, 512).unwrap();
        assert_eq!((f.fat_size, f.cluster_bytes()), (32, 4 * KIB), "{f}");
        let f = choose(32, Some(4 * KIB), 8 * 1024 * MIB, 512).unwrap();
        assert_eq!((f.fat_size, f.sectors_per_cluster), (32, 8), "{f}");
        // FAT16 of 1 GiB needs 16 KiB clusters; FAT12 on 300 MiB is impossible, FAT16 it is.
        assert_eq!(choose(16, None, 1024 * MIB, 512).unwrap().cluster_bytes(), 16 * KIB);
        assert_eq!(choose(12, None, 300 * MIB, 4096).unwrap().fat_size, 16);
        assert_eq!(thousands(51145), "51,145");
        assert_eq!(thousands(999), "999");
    }
}
