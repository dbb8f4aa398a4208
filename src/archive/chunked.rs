//! Compression in independent pieces, on several cores. The tar stream is
//! cut into chunks, each compressed on a worker thread as a complete gzip
//! member ([`GZIP_CHUNK`]) or zstd frame ([`ZSTD_FRAME`], with its content
//! size and checksum), and the pieces written in order. Concatenated gzip
//! members (RFC 1952) and zstd frames (RFC 8878) are one standard stream:
//! `gzip -d`, `pigz -d`, `zstd -d`, `tar -xzf` and `tar --zstd -xf` read it
//! as one.
//!
//! Both are also decompressed in parallel ([`parallel`]): a zstd frame's
//! end is found by walking its header and block headers, which carry their
//! sizes, and a gzip member's end from the size rescue writes into its
//! header's extra field (an `RS` subfield, RFC 1952 2.3.1.1, which every
//! gzip reader passes over, as BGZF does with its `BC`), without
//! decompressing either; each piece then goes to a worker and the results
//! are handed on in order. Memory stays bounded: a few pieces per worker,
//! none above [`ZSTD_FRAME_MAX`] (or [`GZIP_MEMBER_MAX`]). A stream whose
//! pieces do not say their size (from another tool, or from rescue before
//! this) is read by one streaming decoder.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The tar bytes in one gzip member.
pub const GZIP_CHUNK: usize = 1 << 20;

/// The largest gzip member (compressed, and its content) the parallel
/// reader takes; rescue writes members of [`GZIP_CHUNK`].
pub const GZIP_MEMBER_MAX: u64 = 16 << 20;

/// The header of a gzip member as rescue writes it: the fixed header with
/// FEXTRA set (no name, comment or header CRC), XLEN = 8, then one subfield
/// `RS` of 4 bytes holding the whole member's size, little-endian (the
/// last 4 bytes of the header).
const GZIP_SIZED_HEADER: usize = 20;

/// The header of a member of `size` bytes; the reader compares all but the size.
fn gzip_sized_header(size: u32) -> [u8; GZIP_SIZED_HEADER] {
    let mut h = [0u8; GZIP_SIZED_HEADER];
    // ID1 ID2 CM FLG(FEXTRA), MTIME (none), XFL, OS (Unix); XLEN; SI1 SI2 LEN; the size.
    h[..16].copy_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 8, 0, b'R', b'S', 4, 0]);
    h[16..].copy_from_slice(&size.to_le_bytes());
    h
}

/// The tar bytes in one zstd frame: 4 MiB, twice the window of the default
/// level, so that cutting costs little ratio (about 1 %) and a restore has
/// a frame per core to decompress even for small archives.
pub const ZSTD_FRAME: usize = 4 << 20;

/// The largest frame content the parallel reader takes (rescue writes
/// [`ZSTD_FRAME`]); a stream whose first frame is larger or does not say
/// its size (one written by the `zstd` tool, or by rescue before frames)
/// is read by one streaming decoder instead.
pub const ZSTD_FRAME_MAX: u64 = 64 << 20;

/// How each chunk is compressed.
#[derive(Debug, Clone, Copy)]
pub enum Codec {
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Codec {
    fn chunk(self) -> usize {
        match self {
            Codec::Gzip { .. } => GZIP_CHUNK,
            Codec::Zstd { .. } => ZSTD_FRAME,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Gzip { .. } => "gzip",
            Codec::Zstd { .. } => "zstd",
        }
    }
}

/// One worker's compressor (a zstd context is reused from chunk to chunk).
enum Compressor {
    Gzip(u32),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl Compressor {
    fn new(codec: Codec) -> io::Result<Compressor> {
        Ok(match codec {
            Codec::Gzip { level } => Compressor::Gzip(level),
            Codec::Zstd { level } => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
                c.set_parameter(zstd::stream::raw::CParameter::ContentSizeFlag(true))?;
                Compressor::Zstd(Box::new(c))
            }
        })
    }

    fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(level) => gzip_member(data, *level),
            Compressor::Zstd(c) => c.compress(data),
        }
    }
}

/// One gzip member (RFC 1952) of `data` that says its own size in its
/// header's extra field, so that a reader finds its end without inflating it.
fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(data.len() / 2 + 64);
    head.extend_from_slice(&gzip_sized_header(0));
    let mut enc = flate2::write::DeflateEncoder::new(head, flate2::Compression::new(level));
    enc.write_all(data)?;
    let mut out = enc.finish()?;
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let size = u32::try_from(out.len()).map_err(|_| io::Error::other("a gzip member above 4 GiB"))?;
    out[..GZIP_SIZED_HEADER].copy_from_slice(&gzip_sized_header(size));
    Ok(out)
}

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// Compresses what is written to it in independent pieces on `threads` workers.
pub struct ChunkWriter<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    chunk: usize,
    what: &'static str,
    jobs: Option<SyncSender<Job>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    workers: Vec<JoinHandle<()>>,
    max_pending: usize,
}

impl<W: Write> ChunkWriter<W> {
    pub fn new(out: W, codec: Codec, threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    let mut c = Compressor::new(codec);
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((data, reply)) = job else { return };
                        let res = match &mut c {
                            Ok(c) => c.compress(&data),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        let _ = reply.send(res);
                    }
                })
            })
            .collect();
        let chunk = codec.chunk();
        ChunkWriter {
            out: Some(out),
            buf: Vec::with_capacity(chunk),
            chunk,
            what: codec.name(),
            jobs: Some(tx),
            pending: VecDeque::new(),
            workers,
            max_pending: threads * 3,
        }
    }

    fn stopped(&self) -> io::Error {
        io::Error::other(format!("a {} compression thread stopped", self.what))
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        let (tx, rx) = sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(|| self.stopped())?;
        jobs.send((data, tx)).map_err(|_| self.stopped())?;
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_one()?;
        }
        Ok(())
    }

    fn write_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let piece = rx.recv().map_err(|_| self.stopped())??;
            let what = self.what;
            let out = self.out.as_mut().ok_or_else(|| io::Error::other(format!("the {what} writer is already finished")))?;
            out.write_all(&piece)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.write_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let mut out = self.out.take().ok_or_else(|| self.stopped())?;
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ChunkWriter<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames: magic 0x184D2A50 to 0x184D2A5F.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// A block's content never exceeds 128 KiB (RFC 8878, 3.1.1.2).
const BLOCK_MAX: usize = 128 << 10;

/// What the header of the zstd frame at the start of `head` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    /// Bytes of the header after the magic number.
    len: usize,
    content_size: Option<u64>,
    checksum: bool,
}

/// Parse a frame header (`head` starts after the 4-byte magic number);
/// `None` when `head` is too short to hold it.
fn frame_header(head: &[u8]) -> Option<FrameHeader> {
    let fhd = *head.first()?;
    let single_segment = fhd & 0x20 != 0;
    let window = usize::from(!single_segment);
    let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let len = 1 + window + dict + fcs;
    let field = head.get(1 + window + dict..len)?;
    let mut raw = [0u8; 8];
    raw[..fcs].copy_from_slice(field);
    let value = u64::from_le_bytes(raw);
    let content_size = match fcs {
        0 => None,
        2 => Some(value + 256),
        _ => Some(value),
    };
    Some(FrameHeader { len, content_size, checksum: fhd & 4 != 0 })
}

/// The content size the first zstd frame of `head` declares (its magic
/// number first), when it is one that [`parallel`] reads.
pub fn first_frame_fits(head: &[u8]) -> bool {
    head.get(..4).is_some_and(|m| m == ZSTD_MAGIC.to_le_bytes()) && frame_header(&head[4..]).and_then(|h| h.content_size).is_some_and(|s| s <= ZSTD_FRAME_MAX)
}

/// How a compressed stream is cut into pieces that decompress on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pieces {
    /// zstd frames that say their content size.
    Zstd,
    /// gzip members that say their own size (as rescue writes them).
    Gzip,
}

/// How [`parallel`] reads the stream that starts with `head`; `None` when
/// it cannot (one streaming decoder reads it).
pub fn pieces(head: &[u8]) -> Option<Pieces> {
    if first_frame_fits(head) {
        Some(Pieces::Zstd)
    } else if gzip_member_size(head).is_some() {
        Some(Pieces::Gzip)
    } else {
        None
    }
}

/// The size a gzip member written by rescue says it has (`head` starts at
/// the member); `None` for any other header.
fn gzip_member_size(head: &[u8]) -> Option<u64> {
    let h = head.get(..GZIP_SIZED_HEADER)?;
    (h[..16] == gzip_sized_header(0)[..16]).then(|| u64::from(u32::from_le_bytes([h[16], h[17], h[18], h[19]])))
}

/// One piece (a zstd frame, a gzip member) read whole, and where it starts
/// in the compressed stream.
struct Frame {
    kind: Pieces,
    bytes: Vec<u8>,
    content_size: u64,
    offset: u64,
    /// The piece could not be read whole (the stream ends, a block header
    /// is damaged): `bytes` holds what was read before.
    broken: Option<io::Error>,
}

fn truncated(offset: u64) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("the zstd stream ends in the middle of the frame at byte {offset}"))
}

/// Fill `buf` from `r`; `Ok(false)` at the end of the stream before the first byte.
fn read_all_or_none(r: &mut impl Read, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(truncated(offset)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_exact_at(r: &mut impl Read, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if buf.is_empty() || read_all_or_none(r, buf, offset)? {
        Ok(())
    } else {
        Err(truncated(offset))
    }
}

/// Append the next `n` bytes of `r` to `bytes` (copied, never zero-filled first).
fn append(r: &mut impl Read, bytes: &mut Vec<u8>, n: usize, offset: u64) -> io::Result<()> {
    bytes.reserve(n);
    if r.take(n as u64).read_to_end(bytes)? != n {
        return Err(truncated(offset));
    }
    Ok(())
}

/// Read the next data frame whole (skippable frames are passed over);
/// `None` at the end of the stream. `offset`: bytes of the stream read so far.
fn next_frame(r: &mut impl Read, offset: &mut u64) -> io::Result<Option<Frame>> {
    loop {
        let start = *offset;
        let mut magic = [0u8; 4];
        if !read_all_or_none(r, &mut magic, start)? {
            return Ok(None);
        }
        let m = u32::from_le_bytes(magic);
        if m & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let mut size = [0u8; 4];
            read_exact_at(r, &mut size, start)?;
            let size = u64::from(u32::from_le_bytes(size));
            if io::copy(&mut r.take(size), &mut io::sink())? != size {
                return Err(truncated(start));
            }
            *offset += 8 + size;
            continue;
        }
        if m != ZSTD_MAGIC {
            return Err(io::Error::other(format!("the zstd stream is damaged: no frame starts at byte {start}")));
        }
        let mut bytes = magic.to_vec();
        let mut fhd = [0u8; 1];
        read_exact_at(r, &mut fhd, start)?;
        bytes.push(fhd[0]);
        let need = frame_header(&[fhd[0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).map(|h| h.len).unwrap_or(1);
        bytes.resize(4 + need, 0);
        read_exact_at(r, &mut bytes[5..], start)?;
        let header = frame_header(&bytes[4..]).ok_or_else(|| truncated(start))?;
        let content_size = header.content_size.filter(|s| *s <= ZSTD_FRAME_MAX).ok_or_else(|| {
            io::Error::other(format!(
                "the zstd frame at byte {start} does not say its size or is above {} MiB, unlike the others rescue wrote; \
                 decompress the archive with `zstd -d` and read the plain tar",
                ZSTD_FRAME_MAX >> 20
            ))
        })?;
        let blocks = read_blocks(r, &mut bytes, header.checksum, start);
        *offset += bytes.len() as u64;
        return Ok(Some(Frame { kind: Pieces::Zstd, bytes, content_size, offset: start, broken: blocks.err() }));
    }
}

/// Read the next piece of `kind` whole; `None` at the end of the stream.
fn next_piece(kind: Pieces, r: &mut impl Read, offset: &mut u64) -> io::Result<Option<Frame>> {
    match kind {
        Pieces::Zstd => next_frame(r, offset),
        Pieces::Gzip => next_member(r, offset),
    }
}

/// Read the next gzip member whole, by the size its header says; `None`
/// at the end of the stream. `offset`: bytes of the stream read so far.
fn next_member(r: &mut impl Read, offset: &mut u64) -> io::Result<Option<Frame>> {
    let start = *offset;
    let mut head = [0u8; GZIP_SIZED_HEADER];
    if !read_all_or_none(r, &mut head, start).map_err(|e| gzip_cut(e, start))? {
        return Ok(None);
    }
    let size = gzip_member_size(&head).ok_or_else(|| {
        io::Error::other(format!(
            "the gzip member at byte {start} does not say its size, unlike the others rescue wrote (the stream is damaged or was joined \
             to another); decompress the archive with `gzip -d` and read the plain tar"
        ))
    })?;
    if !(GZIP_SIZED_HEADER as u64 + 8..=GZIP_MEMBER_MAX).contains(&size) {
        return Err(io::Error::other(format!("the gzip stream is damaged: the member at byte {start} says it has {size} bytes")));
    }
    let mut bytes = head.to_vec();
    let broken = append(r, &mut bytes, size as usize - GZIP_SIZED_HEADER, start).err().map(|e| gzip_cut(e, start));
    *offset += bytes.len() as u64;
    // Unknown for a member cut short (its trailer is missing).
    let content_size = match &broken {
        Some(_) => 0,
        None => {
            let n = bytes.len();
            u64::from(u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]))
        }
    };
    if content_size > GZIP_MEMBER_MAX {
        return Err(io::Error::other(format!("the gzip stream is damaged: the member at byte {start} says it holds {content_size} bytes")));
    }
    Ok(Some(Frame { kind: Pieces::Gzip, bytes, content_size, offset: start, broken }))
}

/// A cut stream's error, in gzip's words.
fn gzip_cut(e: io::Error, start: u64) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, format!("the gzip stream ends in the middle of the member at byte {start}"))
    } else {
        e
    }
}

/// A gzip member's content, and the error that ends the stream there
/// (after what could be inflated of it): a damaged member, a CRC or size
/// that does not match, a size field that does not end where the member does.
fn inflate(frame: &Frame) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::with_capacity(frame.content_size as usize);
    let mut d = flate2::bufread::GzDecoder::new(&frame.bytes[..]);
    let read = (&mut d).take(GZIP_MEMBER_MAX).read_to_end(&mut out);
    let damaged = |why: String| Some(io::Error::other(format!("the gzip member at byte {} is damaged: {why}", frame.offset)));
    let error = match (read, &frame.broken) {
        (_, Some(e)) => Some(io::Error::new(e.kind(), e.to_string())),
        (Err(e), None) => damaged(e.to_string()),
        (Ok(_), None) if out.len() as u64 != frame.content_size => damaged(format!("it holds {} bytes, its trailer says {}", out.len(), frame.content_size)),
        (Ok(_), None) if !d.into_inner().is_empty() => damaged("it ends before the size its header says".to_string()),
        (Ok(_), None) => None,
    };
    (out, error)
}

/// Read a frame's blocks (and checksum) onto `bytes`, its header already there.
fn read_blocks(r: &mut impl Read, bytes: &mut Vec<u8>, checksum: bool, start: u64) -> io::Result<()> {
    {
        loop {
            let mut bh = [0u8; 3];
            read_exact_at(r, &mut bh, start)?;
            bytes.extend_from_slice(&bh);
            let h = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
            let size = (h >> 3) as usize;
            let content = match (h >> 1) & 3 {
                0 | 2 => size,
                1 => 1,
                _ => return Err(io::Error::other(format!("the zstd stream is damaged: a reserved block type in the frame at byte {start}"))),
            };
            if content > BLOCK_MAX || bytes.len() as u64 > ZSTD_FRAME_MAX * 2 {
                return Err(io::Error::other(format!("the zstd stream is damaged: an impossible block size in the frame at byte {start}")));
            }
            append(r, bytes, content, start)?;
            if h & 1 == 1 {
                break;
            }
        }
        if checksum {
            append(r, bytes, 4, start)?;
        }
        Ok(())
    }
}

/// What a streaming decoder gives of a damaged or cut frame before its
/// error: the files before the damage are restored, as from any stream.
fn salvage(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(d) = zstd::stream::read::Decoder::with_buffer(&frame.bytes[..]) {
        let _ = d.take(frame.content_size).read_to_end(&mut out);
    }
    out
}

/// A piece's content, and the error that ends the stream there (after
/// what could be decompressed of it).
fn decode(frame: Frame, d: &mut io::Result<zstd::bulk::Decompressor<'static>>) -> (Vec<u8>, Option<io::Error>) {
    match frame.kind {
        Pieces::Gzip => inflate(&frame),
        Pieces::Zstd => unzstd(frame, d),
    }
}

/// A zstd frame's content, and the error that ends the stream there.
fn unzstd(frame: Frame, d: &mut io::Result<zstd::bulk::Decompressor<'static>>) -> (Vec<u8>, Option<io::Error>) {
    if let Some(e) = frame.broken {
        let partial = Frame { broken: None, ..frame };
        return (salvage(&partial), Some(e));
    }
    let d = match d {
        Ok(d) => d,
        Err(e) => return (Vec::new(), Some(io::Error::new(e.kind(), e.to_string()))),
    };
    match decompress(&frame, d) {
        Ok(v) => (v, None),
        Err(e) => (salvage(&frame), Some(e)),
    }
}

fn decompress(frame: &Frame, d: &mut zstd::bulk::Decompressor<'static>) -> io::Result<Vec<u8>> {
    let out = d
        .decompress(&frame.bytes, frame.content_size as usize)
        .map_err(|e| io::Error::other(format!("the zstd frame at byte {} is damaged: {e}", frame.offset)))?;
    if out.len() as u64 != frame.content_size {
        return Err(io::Error::other(format!(
            "the zstd frame at byte {} is damaged: it holds {} bytes, its header says {}",
            frame.offset,
            out.len(),
            frame.content_size
        )));
    }
    Ok(out)
}

type Decoded = (Vec<u8>, Option<io::Error>);
type FrameJob = (Frame, SyncSender<Decoded>);

/// Decompress `input`, cut into `kind`'s pieces (see [`pieces`]), on
/// `threads` workers; the pieces' contents arrive on the returned channel
/// in order, an error after what came before it, and nothing after the error.
pub fn parallel<R: Read + Send + 'static>(mut input: R, threads: usize, kind: Pieces) -> Receiver<io::Result<Vec<u8>>> {
    let threads = threads.max(1);
    let (out_tx, out_rx) = sync_channel::<io::Result<Vec<u8>>>(threads);
    let (job_tx, job_rx) = sync_channel::<FrameJob>(threads);
    let (order_tx, order_rx) = sync_channel::<Receiver<Decoded>>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    for _ in 0..threads {
        let job_rx = Arc::clone(&job_rx);
        std::thread::spawn(move || {
            let mut d = zstd::bulk::Decompressor::new();
            loop {
                let job = match job_rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok((frame, reply)) = job else { return };
                let _ = reply.send(decode(frame, &mut d));
            }
        });
    }
    // The reader: cuts the stream into frames, in order.
    std::thread::spawn(move || {
        let mut offset = 0;
        loop {
            let (tx, rx) = sync_channel(1);
            let next = next_piece(kind, &mut input, &mut offset);
            if let Ok(None) = next {
                return;
            }
            if order_tx.send(rx).is_err() {
                return;
            }
            match next {
                Ok(Some(frame)) => {
                    if job_tx.send((frame, tx)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send((Vec::new(), Some(e)));
                    return;
                }
            }
        }
    });
    // The collector: hands the results on in the frames' order.
    std::thread::spawn(move || {
        for rx in order_rx {
            let (data, error) = rx.recv().unwrap_or_else(|_| (Vec::new(), Some(io::Error::other("a decompression thread stopped"))));
            if !data.is_empty() && out_tx.send(Ok(data)).is_err() {
                return;
            }
            if let Some(e) = error {
                let _ = out_tx.send(Err(e));
                return;
            }
        }
    });
    out_rx
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible, yet different from chunk to chunk.
        (0..len as u32).map(|i| ((i / 7) % 251) as u8 ^ ((i >> 20) as u8)).collect()
    }

    fn compressed(codec: Codec, data: &[u8]) -> Vec<u8> {
        let mut w = ChunkWriter::new(Vec::new(), codec, 3);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    /// The content sizes of the pieces, found without decompressing; they cover the stream.
    fn piece_sizes(z: &[u8], kind: Pieces) -> Vec<usize> {
        let (mut r, mut offset, mut sizes) = (io::Cursor::new(z), 0, Vec::new());
        while let Some(f) = next_piece(kind, &mut r, &mut offset).unwrap() {
            sizes.push(f.content_size as usize);
        }
        assert_eq!(offset, z.len() as u64);
        sizes
    }

    fn read_parallel(z: Vec<u8>, threads: usize) -> io::Result<Vec<u8>> {
        read_pieces(z, threads, Pieces::Zstd)
    }

    fn read_gzip(gz: Vec<u8>, threads: usize) -> io::Result<Vec<u8>> {
        read_pieces(gz, threads, Pieces::Gzip)
    }

    fn read_pieces(z: Vec<u8>, threads: usize, kind: Pieces) -> io::Result<Vec<u8>> {
        let mut back = Vec::new();
        for piece in parallel(io::Cursor::new(z), threads, kind) {
            back.extend_from_slice(&piece?);
        }
        Ok(back)
    }

    #[test]
    fn many_gzip_members_read_back_as_one_stream() {
        let data = sample(3_500_000);
        let gz = compressed(Codec::Gzip { level: 6 }, &data);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn gzip_members_say_their_size_and_read_back_in_parallel() {
        let data = sample(GZIP_CHUNK * 3 + 777);
        let gz = compressed(Codec::Gzip { level: 6 }, &data);
        assert_eq!(pieces(&gz), Some(Pieces::Gzip));
        // Four members, each found by the size in its header.
        assert_eq!(piece_sizes(&gz, Pieces::Gzip), [GZIP_CHUNK, GZIP_CHUNK, GZIP_CHUNK, 777]);
        assert_eq!(read_gzip(gz.clone(), 3).unwrap(), data);
        assert_eq!(read_gzip(gz.clone(), 1).unwrap(), data);
        // A gzip member from another writer is not taken (one streaming decoder reads it).
        let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        other.write_all(&data[..1000]).unwrap();
        assert_eq!(pieces(&other.finish().unwrap()), None);
    }

    #[test]
    fn damaged_gzip_members_are_errors_after_the_good_ones() {
        let data = sample(GZIP_CHUNK * 2 + 100);
        let gz = compressed(Codec::Gzip { level: 1 }, &data);
        let n = gz.len();
        // The damage is in the last of the three members.
        let first = gzip_member_size(&gz).unwrap() as usize;
        let last = first + gzip_member_size(&gz[first..]).unwrap() as usize;
        let flip = |at: usize| {
            let mut bad = gz.clone();
            bad[at] ^= 0x01;
            bad
        };
        for (what, bad, says) in [
            ("CRC", flip(n - 8), "damaged"),
            ("size in the trailer", flip(n - 2), "damaged"),
            ("deflate data", flip(last + 30), "damaged"),
            (
                "size in the header",
                {
                    let mut bad = gz.clone();
                    let size = u32::try_from(n - last + 1000).unwrap();
                    bad[last + 16..last + 20].copy_from_slice(&size.to_le_bytes());
                    bad
                },
                "ends in the middle",
            ),
            ("cut", gz[..n - 3].to_vec(), "ends in the middle"),
        ] {
            let pieces: Vec<io::Result<Vec<u8>>> = parallel(io::Cursor::new(bad), 2, Pieces::Gzip).into_iter().collect();
            assert_eq!(pieces[0].as_ref().unwrap()[..], data[..GZIP_CHUNK], "{what}: the first member arrives");
            assert_eq!(pieces[1].as_ref().unwrap()[..], data[GZIP_CHUNK..GZIP_CHUNK * 2], "{what}: the second member arrives");
            let e = pieces.last().unwrap().as_ref().unwrap_err().to_string();
            assert!(e.contains(says), "{what}: {e}");
        }
        // Something else after the members: refused, naming where.
        let mut joined = gz.clone();
        joined.extend_from_slice(b"\x1f\x8b\x08\x00 not a member rescue wrote");
        let e = read_gzip(joined, 2).unwrap_err().to_string();
        assert!(e.contains(&format!("at byte {n} does not say its size")), "{e}");
    }

    #[test]
    fn zstd_frames_read_back_in_parallel_and_as_one_stream() {
        let data = sample(ZSTD_FRAME * 3 + 12345);
        let z = compressed(Codec::Zstd { level: 3 }, &data);
        assert!(first_frame_fits(&z));
        // Four frames, each found by walking its headers.
        assert_eq!(piece_sizes(&z, Pieces::Zstd), [ZSTD_FRAME, ZSTD_FRAME, ZSTD_FRAME, 12345]);
        assert_eq!(read_parallel(z.clone(), 4).unwrap(), data);
        assert_eq!(read_parallel(z.clone(), 1).unwrap(), data);
        // Any zstd decoder reads the frames as one stream.
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
    }

    #[test]
    fn skippable_frames_are_passed_over() {
        let data = sample(1000);
        let mut z = vec![0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        z.extend(zstd::bulk::compress(&data, 3).unwrap());
        z.extend([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
        assert_eq!(read_parallel(z, 2).unwrap(), data);
    }

    #[test]
    fn damage_and_truncation_are_errors_after_the_good_frames() {
        let data = sample(ZSTD_FRAME * 2 + 100);
        let z = compressed(Codec::Zstd { level: 1 }, &data);
        // Flipped bytes in the last frame: the first two arrive, then the error.
        let mut bad = z.clone();
        let at = z.len() - 40;
        for b in &mut bad[at..at + 8] {
            *b ^= 0x5a;
        }
        let pieces: Vec<io::Result<Vec<u8>>> = parallel(io::Cursor::new(bad), 2, Pieces::Zstd).into_iter().collect();
        assert_eq!(pieces[0].as_ref().unwrap()[..], data[..ZSTD_FRAME]);
        assert_eq!(pieces[1].as_ref().unwrap()[..], data[ZSTD_FRAME..ZSTD_FRAME * 2]);
        let e = pieces.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(e.contains("is damaged"), "{e}");
        // Cut in the middle of the first frame: whatever arrives before the error is its start.
        let pieces: Vec<io::Result<Vec<u8>>> = parallel(io::Cursor::new(z[..z.len() / 4].to_vec()), 2, Pieces::Zstd).into_iter().collect();
        assert!(pieces.last().unwrap().is_err());
        let got: Vec<u8> = pieces.iter().filter_map(|p| p.as_ref().ok()).flatten().copied().collect();
        assert_eq!(got[..], data[..got.len()], "the start of a cut frame");
        // Cut short: the error says the stream ends in the middle of a frame.
        let e = read_parallel(z[..z.len() - 3].to_vec(), 2).unwrap_err();
        assert!(e.to_string().contains("ends in the middle") && e.kind() == io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn a_stream_without_frame_sizes_is_not_taken() {
        // What rescue wrote before frames: one streaming frame without its size.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(&sample(100_000)).unwrap();
        let old = e.finish().unwrap();
        assert!(!first_frame_fits(&old));
        assert!(first_frame_fits(&zstd::bulk::compress(b"x", 3).unwrap()));
        assert!(!first_frame_fits(b"\x1f\x8b"));
    }
}
