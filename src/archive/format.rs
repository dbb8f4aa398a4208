//! The on-disk format: POSIX pax tar headers (written and read by hand so
//! that every property GNU tar knows survives: nanosecond mtimes, xattrs as
//! `SCHILY.xattr.*`, ACLs as `SCHILY.acl.*`, GNU sparse format 1.0, long and
//! non-UTF-8 names), the ACL binary <-> text conversion, and the manifest.

use std::io::{self, Read, Write};

use anyhow::{bail, Result};

pub const BLOCK: usize = 512;

/// The most bytes of extended headers (pax `x` and `g`, GNU `L` and `K`)
/// that may precede one member, all of them together: a path, a link
/// target, xattrs and ACLs fit many times over.
pub const MAX_EXTENDED_HEADER_BYTES: u64 = 64 << 20;

/// The most data regions a sparse member may list (16 bytes of memory
/// each). The writer stores a file with more regions densely, so every
/// archive it writes reads back.
pub const MAX_SPARSE_REGIONS: usize = 4 << 20;

/// Name of the last member: the manifest that `verify` checks against.
pub const MANIFEST_NAME: &str = ".rescue-archive-manifest";

/// The kinds of entry the archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    pub fn typeflag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
    pub fn letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::HardLink => 'h',
            Kind::Symlink => 'l',
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Dir => 'd',
            Kind::Fifo => 'p',
        }
    }
}

/// Everything about one member except its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: Kind,
    /// Path inside the archive (relative, no leading `/`), raw bytes.
    pub path: Vec<u8>,
    /// Symlink target or hard link target (raw bytes).
    pub link: Vec<u8>,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Logical file size (the real size for a sparse file).
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes (ACL xattrs excluded: they travel in `acl_*`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// POSIX ACLs in GNU tar's text form (`user::rw-,user:1000:r--,...`).
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
    /// Data regions (offset, length) of a sparse file; `None` for a dense one.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// A directory's names in GNU tar's incremental format (`GNU.dumpdir`,
    /// or the data of a type 'D' member); see `incremental`.
    pub dumpdir: Option<Vec<u8>>,
}

impl EntryMeta {
    pub fn new(kind: Kind, path: Vec<u8>) -> Self {
        EntryMeta {
            kind,
            path,
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            acl_access: None,
            acl_default: None,
            sparse: None,
            dumpdir: None,
        }
    }

    /// Bytes stored in the archive after the header (before padding).
    pub fn stored_size(&self) -> u64 {
        match self.kind {
            Kind::File => match &self.sparse {
                Some(map) => sparse_map_block(map).len() as u64 + map.iter().map(|r| r.1).sum::<u64>(),
                None => self.size,
            },
            _ => 0,
        }
    }
}

/// The text block that starts a GNU sparse 1.0 member: the count of regions,
/// then offset and length of each, one number a line, padded to 512 bytes.
pub fn sparse_map_block(map: &[(u64, u64)]) -> Vec<u8> {
    let mut s = format!("{}\n", map.len());
    for (o, l) in map {
        s.push_str(&format!("{o}\n{l}\n"));
    }
    let mut v = s.into_bytes();
    v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "LEN KEY=VALUE\n", where LEN counts itself.
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn put_octal(field: &mut [u8], v: u64) -> bool {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    if s.len() > width {
        return false;
    }
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
    true
}

fn ustar_header(name: &[u8], prefix: &[u8], link: &[u8], m: &EntryMeta, typeflag: u8, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    put_octal(&mut h[100..108], (m.mode & 0o7777) as u64);
    // Values too large for a field go into the pax header; the field gets 0.
    if !put_octal(&mut h[108..116], m.uid) {
        put_zero(&mut h[108..116]);
    }
    if !put_octal(&mut h[116..124], m.gid) {
        put_zero(&mut h[116..124]);
    }
    if !put_octal(&mut h[124..136], size) {
        put_zero(&mut h[124..136]);
    }
    if !put_octal(&mut h[136..148], m.mtime_sec.max(0) as u64) {
        put_zero(&mut h[136..148]);
    }
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], m.dev_major as u64);
    put_octal(&mut h[337..345], m.dev_minor as u64);
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    set_checksum(&mut h);
    h
}

fn put_zero(field: &mut [u8]) {
    put_octal(field, 0);
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// Split a path into ustar (prefix, name) if it fits, else `None`.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    if path.len() > 256 {
        return None;
    }
    // The prefix ends at a '/', is at most 155 bytes, the rest at most 100.
    let start = path.len().saturating_sub(101);
    (start..path.len().min(156)).find(|&i| path[i] == b'/').and_then(|i| {
        let (p, n) = (&path[..i], &path[i + 1..]);
        (!n.is_empty() && n.len() <= 100).then_some((p, n))
    })
}

/// Write the header block(s) of one member (pax extended header when
/// needed, then the ustar header, then for a sparse file its map block).
/// The caller writes `stored_size()` bytes of data and the padding.
pub fn write_header<W: Write>(w: &mut W, m: &EntryMeta) -> io::Result<()> {
    let mut pax = Vec::new();
    let size = m.stored_size();
    let mut name_path: Vec<u8> = m.path.clone();
    if m.kind == Kind::Dir && !name_path.ends_with(b"/") {
        name_path.push(b'/');
    }
    if m.sparse.is_some() {
        pax_record(&mut pax, b"GNU.sparse.major", b"1");
        pax_record(&mut pax, b"GNU.sparse.minor", b"0");
        pax_record(&mut pax, b"GNU.sparse.name", &m.path);
        pax_record(&mut pax, b"GNU.sparse.realsize", m.size.to_string().as_bytes());
        // The ustar name GNU tar uses for the data member.
        let (dir, base) = match m.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&m.path[..i], &m.path[i + 1..]),
            None => (&b"."[..], &m.path[..]),
        };
        let mut n = dir.to_vec();
        n.extend_from_slice(b"/GNUSparseFile.0/");
        n.extend_from_slice(base);
        name_path = n;
    }
    let non_utf8 = std::str::from_utf8(&m.path).is_err() || std::str::from_utf8(&m.link).is_err();
    let split = split_ustar(&name_path);
    let (prefix, name): (Vec<u8>, Vec<u8>) = match split {
        Some((p, n)) => (p.to_vec(), n.to_vec()),
        None => {
            if m.sparse.is_none() {
                pax_record(&mut pax, b"path", &name_path);
            }
            (Vec::new(), truncate(&name_path, 100))
        }
    };
    let link = if m.link.len() > 100 {
        pax_record(&mut pax, b"linkpath", &m.link);
        truncate(&m.link, 100)
    } else {
        m.link.clone()
    };
    if non_utf8 && !pax.is_empty() {
        // GNU tar takes pax path values as raw bytes with this.
        let mut p2 = Vec::new();
        pax_record(&mut p2, b"hdrcharset", b"BINARY");
        p2.extend_from_slice(&pax);
        pax = p2;
    }
    if m.mtime_nsec != 0 || m.mtime_sec < 0 || m.mtime_sec as u64 > 0o77777777777 {
        let v = if m.mtime_nsec != 0 { format!("{}.{:09}", m.mtime_sec, m.mtime_nsec) } else { m.mtime_sec.to_string() };
        pax_record(&mut pax, b"mtime", v.as_bytes());
    }
    if m.uid > 0o7777777 {
        pax_record(&mut pax, b"uid", m.uid.to_string().as_bytes());
    }
    if m.gid > 0o7777777 {
        pax_record(&mut pax, b"gid", m.gid.to_string().as_bytes());
    }
    if size > 0o77777777777 {
        pax_record(&mut pax, b"size", size.to_string().as_bytes());
    }
    for (k, v) in &m.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax_record(&mut pax, &key, v);
    }
    if let Some(a) = &m.acl_access {
        pax_record(&mut pax, b"SCHILY.acl.access", a.as_bytes());
    }
    if let Some(a) = &m.acl_default {
        pax_record(&mut pax, b"SCHILY.acl.default", a.as_bytes());
    }
    if let Some(d) = &m.dumpdir {
        pax_record(&mut pax, b"GNU.dumpdir", d);
    }
    if !pax.is_empty() {
        let base = m.path.rsplit(|&b| b == b'/').find(|s| !s.is_empty()).unwrap_or(b"x");
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(&truncate(base, 80));
        let mut pm = EntryMeta::new(Kind::File, Vec::new());
        pm.mtime_sec = m.mtime_sec.max(0);
        let h = ustar_header(&pname, &[], &[], &pm, b'x', pax.len() as u64);
        w.write_all(&h)?;
        w.write_all(&pax)?;
        write_padding(w, pax.len() as u64)?;
    }
    let typeflag = m.kind.typeflag();
    let h = ustar_header(&name, &prefix, &link, m, typeflag, size);
    w.write_all(&h)?;
    if let Some(map) = &m.sparse {
        w.write_all(&sparse_map_block(map))?;
    }
    Ok(())
}

fn truncate(b: &[u8], n: usize) -> Vec<u8> {
    b[..b.len().min(n)].to_vec()
}

pub fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

pub fn write_padding<W: Write>(w: &mut W, len: u64) -> io::Result<()> {
    let p = padding(len);
    if p > 0 {
        w.write_all(&[0u8; BLOCK][..p])?;
    }
    Ok(())
}

/// The end-of-archive marker: two zero blocks.
pub fn write_trailer<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(&[0u8; BLOCK * 2])
}

// ---------------------------------------------------------------- reading

/// Reads members one after the other from an uncompressed tar stream.
pub struct TarReader<R: Read> {
    r: R,
    /// Bytes of the current member's stored data not yet read.
    remaining: u64,
    pad: usize,
    /// Stream offset, for error messages.
    pub offset: u64,
    /// Name of the last member read (for "truncated after ..." messages).
    pub last_path: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader { r, remaining: 0, pad: 0, offset: 0, last_path: None }
    }

    fn read_exact_block(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => {
                    if got == 0 {
                        return Ok(false);
                    }
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends in the middle of a block"));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    /// Read up to `buf.len()` bytes of the current member's data.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = self.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends in the middle of a member's data"));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    pub fn read_data_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_data(&mut buf[got..])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "member data is shorter than its header says"));
            }
            got += n;
        }
        Ok(())
    }

    /// Skip what is left of the current member (data and padding).
    fn finish_member(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        while self.remaining > 0 {
            self.read_data(&mut buf)?;
        }
        if self.pad > 0 {
            let mut p = [0u8; BLOCK];
            let pad = self.pad;
            self.pad = 0;
            let mut got = 0;
            while got < pad {
                let n = self.r.read(&mut p[got..pad])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends in the padding of a member"));
                }
                got += n;
            }
            self.offset += pad as u64;
        }
        Ok(())
    }

    /// Read an extended header's data whole, within what is left of the
    /// member's budget `left` (all its extended headers together).
    fn read_whole_data(&mut self, left: &mut u64) -> Result<Vec<u8>> {
        if self.remaining > *left {
            bail!(
                "the extended headers before one member add up to more than {} MiB{} (corrupt or hostile archive?)",
                MAX_EXTENDED_HEADER_BYTES >> 20,
                self.after_last()
            );
        }
        *left -= self.remaining;
        let mut v = vec![0u8; self.remaining as usize];
        self.read_data_exact(&mut v)?;
        self.finish_member()?;
        Ok(v)
    }

    /// Read what follows the end-of-archive marker to the end of the
    /// stream, so that the decompressor checks its own trailer (gzip CRC
    /// and size, zstd checksum): damage or truncation there is an error.
    pub fn read_to_end_of_stream(&mut self) -> Result<()> {
        io::copy(&mut self.r, &mut io::sink()).map_err(|e| {
            anyhow::anyhow!(
                "the compressed stream is damaged or truncated after the end of the tar archive ({e}): \
                 the data is not what was written; take another copy of the archive"
            )
        })?;
        Ok(())
    }

    /// The next member's metadata; its data is then read with `read_data`.
    /// `Ok(None)` at the end-of-archive marker. An archive that just stops
    /// (truncated) is an error.
    pub fn next_entry(&mut self) -> Result<Option<EntryMeta>> {
        self.finish_member()?;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut gnu_long_name: Option<Vec<u8>> = None;
        let mut gnu_long_link: Option<Vec<u8>> = None;
        let mut extended_left = MAX_EXTENDED_HEADER_BYTES;
        loop {
            let mut h = [0u8; BLOCK];
            let at = self.offset;
            if !self.read_exact_block(&mut h)? {
                bail!("{}", self.truncated_message());
            }
            if h.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored: u32 = h[..148].iter().chain([b' '; 8].iter()).chain(h[156..].iter()).map(|&b| b as u32).sum();
            let recorded = parse_octal(&h[148..156]).unwrap_or(u64::MAX);
            if stored as u64 != recorded {
                bail!("corrupt tar header at byte {at} of the uncompressed stream{} (checksum mismatch)", self.after_last());
            }
            let size = parse_number(&h[124..136]).unwrap_or(0);
            self.remaining = size;
            self.pad = padding(size);
            let typeflag = h[156];
            match typeflag {
                b'x' => {
                    let data = self.read_whole_data(&mut extended_left)?;
                    pax.extend(parse_pax(&data)?);
                    continue;
                }
                b'g' => {
                    self.read_whole_data(&mut extended_left)?;
                    continue;
                }
                b'L' => {
                    let mut d = self.read_whole_data(&mut extended_left)?;
                    while d.last() == Some(&0) {
                        d.pop();
                    }
                    gnu_long_name = Some(d);
                    continue;
                }
                b'K' => {
                    let mut d = self.read_whole_data(&mut extended_left)?;
                    while d.last() == Some(&0) {
                        d.pop();
                    }
                    gnu_long_link = Some(d);
                    continue;
                }
                _ => {}
            }
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' | b'D' => Kind::Dir,
                b'6' => Kind::Fifo,
                other => bail!("unsupported tar member type '{}' at byte {at}{}", other as char, self.after_last()),
            };
            let mut name = cstr(&h[0..100]).to_vec();
            if &h[257..262] == b"ustar" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(&name);
                    name = p;
                }
            }
            let mut m = EntryMeta::new(kind, name);
            if let Some(n) = gnu_long_name.take() {
                m.path = n;
            }
            m.link = gnu_long_link.take().unwrap_or_else(|| cstr(&h[157..257]).to_vec());
            m.mode = parse_octal(&h[100..108]).unwrap_or(0o644) as u32 & 0o7777;
            m.uid = parse_number(&h[108..116]).unwrap_or(0);
            m.gid = parse_number(&h[116..124]).unwrap_or(0);
            m.mtime_sec = parse_number(&h[136..148]).unwrap_or(0) as i64;
            m.size = size;
            m.dev_major = parse_octal(&h[329..337]).unwrap_or(0) as u32;
            m.dev_minor = parse_octal(&h[337..345]).unwrap_or(0) as u32;
            let mut sparse_major = None;
            let mut sparse_name = None;
            let mut realsize = None;
            for (k, v) in pax {
                match &k[..] {
                    b"path" => m.path = v,
                    b"linkpath" => m.link = v,
                    b"uid" => m.uid = parse_dec(&v)?,
                    b"gid" => m.gid = parse_dec(&v)?,
                    b"size" => {
                        m.size = parse_dec(&v)?;
                        self.remaining = m.size;
                        self.pad = padding(m.size);
                    }
                    b"mtime" => {
                        let s = String::from_utf8_lossy(&v).to_string();
                        let (sec, frac) = s.split_once('.').unwrap_or((&s, ""));
                        m.mtime_sec = sec.parse().unwrap_or(0);
                        let mut f = frac.chars().take(9).collect::<String>();
                        while f.len() < 9 {
                            f.push('0');
                        }
                        m.mtime_nsec = f.parse().unwrap_or(0);
                    }
                    b"SCHILY.acl.access" => m.acl_access = Some(String::from_utf8_lossy(&v).into_owned()),
                    b"SCHILY.acl.default" => m.acl_default = Some(String::from_utf8_lossy(&v).into_owned()),
                    b"GNU.sparse.major" => sparse_major = Some(v),
                    b"GNU.sparse.name" => sparse_name = Some(v),
                    b"GNU.sparse.realsize" => realsize = Some(parse_dec(&v)?),
                    b"GNU.dumpdir" => m.dumpdir = Some(v),
                    _ if k.starts_with(b"SCHILY.xattr.") => m.xattrs.push((k[13..].to_vec(), v)),
                    _ => {}
                }
            }
            if sparse_major.as_deref() == Some(b"1") && kind == Kind::File {
                if let Some(n) = sparse_name {
                    m.path = n;
                }
                let map = self.read_sparse_map().map_err(|e| e.context(format!("reading the sparse map of member {}", String::from_utf8_lossy(&m.path))))?;
                m.size = self.check_sparse_map(&map, realsize).map_err(|e| e.context(format!("member {}", String::from_utf8_lossy(&m.path))))?;
                m.sparse = Some(map);
            }
            if typeflag == b'D' {
                // GNU format: the dumpdir is the member's data.
                m.dumpdir = Some(self.read_whole_data(&mut extended_left)?);
                m.size = 0;
            }
            // Strip a trailing slash from directory names.
            while m.path.len() > 1 && m.path.ends_with(b"/") {
                m.path.pop();
            }
            self.last_path = Some(m.path.clone());
            return Ok(Some(m));
        }
    }

    /// Read the GNU sparse 1.0 map that starts a sparse member's data, in one
    /// pass: the count of regions, then offset and length of each, one
    /// decimal number a line, padded to a whole block.
    fn read_sparse_map(&mut self) -> Result<Vec<(u64, u64)>> {
        let mut count: Option<usize> = None;
        let mut map = Vec::new();
        let mut offset: Option<u64> = None;
        let mut number: u64 = 0;
        let mut digits = 0;
        loop {
            let mut blk = [0u8; BLOCK];
            self.read_data_exact(&mut blk)?;
            for &b in &blk {
                if b.is_ascii_digit() {
                    number = number
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(b - b'0')))
                        .ok_or_else(|| anyhow::anyhow!("a number in the sparse map is larger than 2^64"))?;
                    digits += 1;
                    continue;
                }
                if b != b'\n' || digits == 0 {
                    bail!("the sparse map is not one decimal number a line (corrupt archive?)");
                }
                match count {
                    None => {
                        let n = usize::try_from(number).ok().filter(|&n| n <= MAX_SPARSE_REGIONS);
                        let n = n.ok_or_else(|| {
                            anyhow::anyhow!("the sparse map lists {number} regions, more than the {MAX_SPARSE_REGIONS} rescue accepts (corrupt archive?)")
                        })?;
                        count = Some(n);
                    }
                    Some(_) => match offset.take() {
                        None => offset = Some(number),
                        Some(o) => map.push((o, number)),
                    },
                }
                number = 0;
                digits = 0;
                if count == Some(map.len()) && offset.is_none() {
                    // The rest of the block is padding.
                    return Ok(map);
                }
            }
        }
    }

    /// Check a sparse map against the member: regions inside the file, the
    /// file within what Linux can address, the data within the member.
    /// Returns the file's real size.
    fn check_sparse_map(&self, map: &[(u64, u64)], realsize: Option<u64>) -> Result<u64> {
        let mut end = 0u64;
        let mut data = 0u64;
        for &(offset, len) in map {
            let region_end = Some(offset).filter(|&o| o >= end).and_then(|o| o.checked_add(len));
            end = region_end.ok_or_else(|| {
                anyhow::anyhow!("its sparse map has a region at offset {offset} (length {len}) that overlaps or wraps around (corrupt archive?)")
            })?;
            data = data.saturating_add(len);
        }
        let size = realsize.unwrap_or(end);
        if size < end {
            bail!("its sparse map has a region ending at byte {end}, beyond the file's size of {size} bytes (corrupt archive?)");
        }
        if size > i64::MAX as u64 {
            bail!("its size of {size} bytes is larger than a Linux file can be (corrupt archive?)");
        }
        if data > self.remaining {
            bail!("its sparse map lists {data} bytes of data, but the member holds only {} (corrupt archive?)", self.remaining);
        }
        Ok(size)
    }

    fn after_last(&self) -> String {
        match &self.last_path {
            Some(p) => format!(", after member {}", String::from_utf8_lossy(p)),
            None => String::new(),
        }
    }

    pub fn truncated_message(&self) -> String {
        match &self.last_path {
            Some(p) => format!("the archive is truncated: it ends after member {} without the end-of-archive marker", String::from_utf8_lossy(p)),
            None => "the archive is empty or truncated before its first member".to_string(),
        }
    }
}

fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

fn parse_octal(b: &[u8]) -> Option<u64> {
    let s = cstr(b);
    let s = std::str::from_utf8(s).ok()?.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Octal, or GNU base-256 when the high bit of the first byte is set.
fn parse_number(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        let mut v: u64 = (b[0] & 0x7f) as u64;
        for &c in &b[1..] {
            v = v.checked_shl(8)? | c as u64;
        }
        Some(v)
    } else {
        parse_octal(b)
    }
}

fn parse_dec(b: &[u8]) -> Result<u64> {
    let s = std::str::from_utf8(b).map_err(|_| anyhow::anyhow!("a number in a tar header is not text"))?;
    s.trim().parse().map_err(|_| anyhow::anyhow!("bad number {s:?} in a tar header (corrupt archive?)"))
}

fn parse_pax(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(|| anyhow::anyhow!("corrupt pax extended header"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("corrupt pax extended header (bad record length)"))?;
        if len > rest.len() || len <= sp + 1 {
            bail!("corrupt pax extended header (record longer than the header)");
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(|| anyhow::anyhow!("corrupt pax record without '='"))?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

// ---------------------------------------------------------------- ACLs

const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_XATTR_VERSION: u32 = 2;

/// The kernel's `system.posix_acl_*` xattr value as text with numeric ids.
/// `None` when the ACL is only the three base entries (the mode says it all).
pub fn acl_xattr_to_text(v: &[u8], default_acl: bool) -> Option<String> {
    if v.len() < 4 || (v.len() - 4) % 8 != 0 {
        return None;
    }
    let mut parts = Vec::new();
    let mut extended = false;
    for e in v[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let p = format!("{}{}{}", if perm & 4 != 0 { 'r' } else { '-' }, if perm & 2 != 0 { 'w' } else { '-' }, if perm & 1 != 0 { 'x' } else { '-' });
        let s = match tag {
            ACL_USER_OBJ => format!("user::{p}"),
            ACL_USER => {
                extended = true;
                format!("user:{id}:{p}")
            }
            ACL_GROUP_OBJ => format!("group::{p}"),
            ACL_GROUP => {
                extended = true;
                format!("group:{id}:{p}")
            }
            ACL_MASK => {
                extended = true;
                format!("mask::{p}")
            }
            ACL_OTHER => format!("other::{p}"),
            _ => return None,
        };
        parts.push(s);
    }
    (extended || default_acl).then(|| parts.join(","))
}

/// Text ACL (commas or newlines, numeric ids) back to the xattr value.
pub fn acl_text_to_xattr(text: &str) -> Result<Vec<u8>> {
    let mut entries: Vec<(u16, u16, u32)> = Vec::new();
    for item in text.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()) {
        let item = item.split('#').next().unwrap_or("").trim();
        let f: Vec<&str> = item.split(':').collect();
        if f.len() < 3 {
            bail!("bad ACL entry {item:?}");
        }
        let (tag, qual, perms) = (f[0], f[1], f[2]);
        // Qualifier: a numeric id, or a name (GNU tar writes names) looked up
        // on this system; star's form appends the id as a fourth field.
        let id: u32 = if qual.is_empty() {
            u32::MAX
        } else if let Some(n) = f.get(3).and_then(|x| x.parse().ok()) {
            n
        } else if let Ok(n) = qual.parse() {
            n
        } else {
            let file = if matches!(tag, "user" | "u") { "/etc/passwd" } else { "/etc/group" };
            let found = crate::util::account_id(std::path::Path::new(file), qual)?;
            found.ok_or_else(|| anyhow::anyhow!("ACL entry {item:?} names a user or group unknown on this system"))?
        };
        let t = match (tag, qual.is_empty()) {
            ("user" | "u", true) => ACL_USER_OBJ,
            ("user" | "u", false) => ACL_USER,
            ("group" | "g", true) => ACL_GROUP_OBJ,
            ("group" | "g", false) => ACL_GROUP,
            ("mask" | "m", _) => ACL_MASK,
            ("other" | "o", _) => ACL_OTHER,
            _ => bail!("bad ACL entry {item:?}"),
        };
        let mut p = 0u16;
        for c in perms.chars() {
            match c {
                'r' => p |= 4,
                'w' => p |= 2,
                'x' => p |= 1,
                '-' => {}
                _ => bail!("bad ACL permissions in {item:?}"),
            }
        }
        let id = if matches!(t, ACL_USER | ACL_GROUP) { id } else { u32::MAX };
        entries.push((t, p, id));
    }
    entries.sort_by_key(|e| (e.0, e.2));
    let mut v = ACL_XATTR_VERSION.to_le_bytes().to_vec();
    for (t, p, id) in entries {
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&p.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    Ok(v)
}

// ---------------------------------------------------------------- manifest

/// Escape a raw path for one manifest line (`%XX` for `%`, control bytes,
/// space, and bytes that are not UTF-8).
pub fn escape_path(p: &[u8]) -> String {
    let mut out = String::with_capacity(p.len());
    let mut rest = p;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                push_escaped(&mut out, std::str::from_utf8(good).unwrap_or(""));
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("%{b:02X}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '%' || c.is_control() || c == ' ' {
            let mut b = [0u8; 4];
            for x in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{x:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

pub fn unescape_path(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One manifest line: `KIND SIZE HASH PATH` (hash `-` for non-files).
pub fn manifest_line(kind: Kind, size: u64, hash: Option<u128>, path: &[u8]) -> String {
    match hash {
        Some(h) => format!("{} {} {:032x} {}\n", kind.letter(), size, h, escape_path(path)),
        None => format!("{} - - {}\n", kind.letter(), escape_path(path)),
    }
}

/// The manifest line naming a member whose file changed while it was read.
/// It has the four fields of an entry line, so a reader that does not know
/// it takes it for an entry of a kind it does not check.
pub fn manifest_changed_line(path: &[u8]) -> String {
    format!("{CHANGED_PREFIX}{}\n", escape_path(path))
}

const CHANGED_PREFIX: &str = "changed - - ";

/// The members a manifest names as changed while they were read.
pub fn manifest_changed(text: &str) -> Vec<Vec<u8>> {
    text.lines().filter_map(|l| l.strip_prefix(CHANGED_PREFIX)).map(unescape_path).collect()
}

pub const MANIFEST_HEADER: &str = "rescue-archive-manifest 1 (kind size xxh3-128 path)\n";

/// A parsed manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub kind: char,
    pub size: Option<u64>,
    pub hash: Option<u128>,
    pub path: Vec<u8>,
}

pub fn parse_manifest(text: &str) -> Result<(Vec<ManifestEntry>, Option<String>)> {
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.starts_with("rescue-archive-manifest 1") => {}
        _ => bail!("the archive's manifest has an unknown format"),
    }
    let mut out = Vec::new();
    let mut summary = None;
    for l in lines {
        if let Some(s) = l.strip_prefix("end ") {
            summary = Some(s.to_string());
            continue;
        }
        if l.starts_with(CHANGED_PREFIX) {
            continue;
        }
        let f: Vec<&str> = l.splitn(4, ' ').collect();
        if f.len() != 4 {
            bail!("bad manifest line {l:?}");
        }
        out.push(ManifestEntry {
            kind: f[0].chars().next().unwrap_or('?'),
            size: f[1].parse().ok(),
            hash: u128::from_str_radix(f[2], 16).ok(),
            path: unescape_path(f[3]),
        });
    }
    Ok((out, summary))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changed_members_are_named_in_the_manifest_apart_from_its_entries() {
        let text = format!("{MANIFEST_HEADER}{}{}end files=1", manifest_line(Kind::File, 3, Some(7), b"var/log/a b"), manifest_changed_line(b"var/log/a b"));
        let (entries, summary) = parse_manifest(&text).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(summary.as_deref(), Some("files=1"));
        assert_eq!(manifest_changed(&text), vec![b"var/log/a b".to_vec()]);
        // A reader that does not know the line sees four fields, as in an entry.
        assert_eq!(manifest_changed_line(b"x").split(' ').count(), 4);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", &[b'a'; 93]);
        let s = String::from_utf8(v.clone()).unwrap();
        let n: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, v.len());
        assert_eq!(parse_pax(&v).unwrap()[0].1.len(), 93);
    }

    #[test]
    fn acl_text_round_trip() {
        let text = "user::rw-,user:1000:r--,group::r--,group:50:rwx,mask::rwx,other::---";
        let x = acl_text_to_xattr(text).unwrap();
        assert_eq!(acl_xattr_to_text(&x, false).unwrap(), text);
    }

    #[test]
    fn paths_escape_and_unescape() {
        let p = b"a b/%x\n\xff\xfe/\xc3\xa9";
        let e = escape_path(p);
        assert!(!e.contains(' ') && !e.contains('\n'));
        assert_eq!(unescape_path(&e), p.to_vec());
    }

    #[test]
    fn header_round_trip_with_long_name_and_nanoseconds() {
        let mut m = EntryMeta::new(Kind::File, vec![b'd'; 300]);
        m.mtime_sec = 1_700_000_000;
        m.mtime_nsec = 123_456_789;
        m.size = 3;
        m.xattrs.push((b"user.x".to_vec(), b"\0bin".to_vec()));
        let mut out = Vec::new();
        write_header(&mut out, &m).unwrap();
        out.extend_from_slice(b"abc");
        write_padding(&mut out, 3).unwrap();
        write_trailer(&mut out).unwrap();
        let mut r = TarReader::new(&out[..]);
        let got = r.next_entry().unwrap().unwrap();
        assert_eq!(got, m);
        let mut buf = [0u8; 10];
        assert_eq!(r.read_data(&mut buf).unwrap(), 3);
        assert!(r.next_entry().unwrap().is_none());
    }
}
