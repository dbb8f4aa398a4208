//! Parallel gzip: the stream is cut into 1 MiB chunks, each compressed on a
//! worker thread as a complete gzip member, and the members written in
//! order. Concatenated gzip members are a standard gzip stream (RFC 1952):
//! `gzip -d`, `tar -xzf` and `pigz -d` read it as one.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const CHUNK: usize = 1 << 20;

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

pub struct ParallelGzWriter<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    workers: Vec<JoinHandle<()>>,
    max_pending: usize,
}

impl<W: Write> ParallelGzWriter<W> {
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok((data, reply)) = job else { return };
                    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::new(level));
                    let res = enc.write_all(&data).and_then(|_| enc.finish());
                    let _ = reply.send(res);
                })
            })
            .collect();
        ParallelGzWriter { out: Some(out), buf: Vec::with_capacity(CHUNK), jobs: Some(tx), pending: VecDeque::new(), workers, max_pending: threads * 3 }
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let (tx, rx) = sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?
            .send((data, tx))
            .map_err(|_| io::Error::other("a gzip worker thread stopped"))?;
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_one()?;
        }
        Ok(())
    }

    fn write_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let member = rx.recv().map_err(|_| io::Error::other("a gzip worker thread stopped"))??;
            self.out.as_mut().ok_or_else(|| io::Error::other("gzip writer already finished"))?.write_all(&member)?;
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
        let mut out = self.out.take().ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzWriter<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn many_members_read_back_as_one_stream() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2);
        w.write_all(&data).unwrap();
        let gz = w.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
