//! The archive engine: a standard pax tar stream, compressed as a standard
//! zstd or gzip stream, written fast (files read ahead by several threads,
//! compression in independent pieces on every core), restored fast (zstd
//! frames decompressed on every core) and safely (nothing is ever written
//! outside the target). Used by `rescue archive`, `mkbackup(only)`,
//! `restoreonly` and `recover`.
//!
//! - `format`: tar headers, pax records, ACL text, manifest lines
//! - `create`: walking sources and writing an archive
//! - `extract`: reading an archive: extract, list, verify
//! - `chunked`: compression in independent gzip members / zstd frames, and
//!   parallel decompression of the zstd frames
//! - `incremental`: GNU tar's dumpdirs (written in a chain, applied on extraction: deletions, renames)
//! - `snapshot`: the state the next incremental archive compares against
//! - `age`: encryption (the age format) around the compressed stream

pub mod age;
pub mod chunked;
pub mod create;
pub mod extract;
pub mod format;
pub mod incremental;
pub mod progress;
pub mod snapshot;
mod subvol;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use create::{create, CreateOptions, CreateReport, Source};
pub use extract::{extract, list, verify, ExtractOptions, ExtractReport, SelinuxLabels, VerifyReport};

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// zstd (independent 4 MiB frames, compressed and decompressed on every core): fast, small.
    /// `tar --zstd -xf` reads it.
    #[default]
    Zstd,
    /// gzip (parallel members): the most widely readable. `tar -xzf` reads it.
    Gzip,
    /// A plain tar stream.
    None,
}

impl Compression {
    /// The file name suffix: `tar.zst`, `tar.gz`, `tar`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "tar.zst",
            Compression::Gzip => "tar.gz",
            Compression::None => "tar",
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 3,
            Compression::Gzip => 6,
            Compression::None => 0,
        }
    }
}

/// The largest zstd window the reader accepts, as a power of two: what
/// the writer's highest level (19) uses, 8 MiB. A frame asking for more
/// (up to 2 GiB) was not written by rescue and is refused before the
/// decoder allocates it.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Number of CPUs we may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// The compressor in front of the output.
pub enum Sink<W: Write> {
    Chunked(chunked::ChunkWriter<W>),
    Plain(W),
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, compression: Compression, level: Option<i32>, threads: usize) -> Result<Self> {
        let level = level.unwrap_or(compression.default_level());
        Ok(match compression {
            Compression::Zstd => {
                if !(1..=19).contains(&level) {
                    crate::bail_input!("zstd level {level} is out of range: use 1 (fastest) to 19 (smallest)");
                }
                Sink::Chunked(chunked::ChunkWriter::new(out, chunked::Codec::Zstd { level }, threads))
            }
            Compression::Gzip => {
                if !(1..=9).contains(&level) {
                    crate::bail_input!("gzip level {level} is out of range: use 1 (fastest) to 9 (smallest)");
                }
                Sink::Chunked(chunked::ChunkWriter::new(out, chunked::Codec::Gzip { level: level as u32 }, threads))
            }
            Compression::None => Sink::Plain(out),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Sink::Chunked(c) => c.finish(),
            Sink::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Chunked(c) => c.write(buf),
            Sink::Plain(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Chunked(c) => c.write_all(buf),
            Sink::Plain(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Chunked(c) => c.flush(),
            Sink::Plain(w) => w.flush(),
        }
    }
}

/// Recognise the compression of a stream by its first bytes.
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// A reader fed by a decompressing thread, so that decompression overlaps
/// with writing files. Errors of the decompressor arrive in order.
pub struct ThreadedReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ThreadedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Open a (possibly compressed) archive stream for reading: detect the
/// compression, and decompress on separate threads: zstd frames of the
/// size rescue writes on every core, any other stream on one.
pub fn open_stream<R: Read + Send + 'static>(input: R) -> io::Result<(ThreadedReader, Compression)> {
    let mut br = BufReader::with_capacity(1 << 20, input);
    if age::is_encrypted(br.fill_buf()?) {
        // Callers decrypt with `age::open` first; this one was handed the raw file.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the archive is encrypted (age): give the identity with --age-identity FILE, or decrypt it by hand with \
             `age -d -i KEYFILE ARCHIVE | zstd -d | tar -x`",
        ));
    }
    let kind = detect(br.fill_buf()?);
    // What rescue wrote is cut into pieces that say their size: decompressed on every core.
    if let Some(pieces) = chunked::pieces(br.fill_buf()?) {
        let rx = chunked::parallel(br, cpus(), pieces);
        return Ok((ThreadedReader { rx, cur: Vec::new(), pos: 0, done: false }, kind));
    }
    let mut dec: Box<dyn Read + Send> = match kind {
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(br)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(ZstdErrors(d))
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::None => Box::new(br),
    };
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(8);
    std::thread::spawn(move || loop {
        let mut v = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < v.len() {
            match dec.read(&mut v[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Hand over what was decompressed before the damage first.
                    v.truncate(got);
                    if got > 0 {
                        let _ = tx.send(Ok(v));
                    }
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if got == 0 {
            return;
        }
        v.truncate(got);
        if tx.send(Ok(v)).is_err() {
            return;
        }
    });
    Ok((ThreadedReader { rx, cur: Vec::new(), pos: 0, done: false }, kind))
}

/// Explains the zstd decoder's one error that is a limit, not damage.
struct ZstdErrors<R>(R);

impl<R: Read> Read for ZstdErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.to_string().contains("too much memory") {
                io::Error::other(format!(
                    "{e}: the zstd stream asks for a window above {} MiB, which rescue never writes; \
                     decompress it with `zstd -d --long=31` and read the plain tar",
                    (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20
                ))
            } else {
                e
            }
        })
    }
}

/// A `Read` that counts bytes into a shared counter (for progress).
pub struct CountingReader<R> {
    pub inner: R,
    pub count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read_back(z: Vec<u8>) -> Vec<u8> {
        let (mut r, kind) = open_stream(io::Cursor::new(z)).unwrap();
        assert_eq!(kind, Compression::Zstd);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        back
    }

    #[test]
    fn streams_of_the_frame_writer_and_of_the_old_writer_both_read() {
        let data: Vec<u8> = (0..(chunked::ZSTD_FRAME * 2 + 777) as u32).map(|i| (i % 253) as u8 ^ (i >> 16) as u8).collect();
        let mut sink = Sink::new(Vec::new(), Compression::Zstd, None, 2).unwrap();
        sink.write_all(&data).unwrap();
        let framed = sink.finish().unwrap();
        assert!(chunked::first_frame_fits(&framed), "the writer gives its frames' sizes");
        assert_eq!(read_back(framed), data);
        // What rescue wrote before frames: one multithreaded streaming frame.
        let mut old = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        old.include_checksum(true).unwrap();
        old.multithread(2).unwrap();
        old.write_all(&data).unwrap();
        let old = old.finish().unwrap();
        assert!(!chunked::first_frame_fits(&old));
        assert_eq!(read_back(old), data);
    }
}
