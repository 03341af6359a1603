//! The streaming pipeline: source → sha256 → zstd (multi-threaded) → age → sha256 → every
//! destination at once. Nothing is staged on disk; memory is bounded by the chunk size,
//! the channel depth per destination and each store's part buffers.
//!
//! [`PipelineWriter`] is a blocking `Write` used from a blocking thread; it fans chunks
//! out to one bounded channel per destination. A destination whose channel closes (its
//! upload failed) is dropped and the others go on; when all are gone the writer fails,
//! which stops the source.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::store::Chunk;

/// Size of the chunks handed to stores.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued per destination.
pub const QUEUE_DEPTH: usize = 4;
/// zstd level (3 is zstd's default: fast, good ratio).
pub const ZSTD_LEVEL: i32 = 3;
/// zstd multi-threading job size. NB: the default at level 3 is 8 MiB, and several jobs'
/// input and output buffers are alive at once, which alone would take ~64 MiB; 2 MiB jobs
/// keep memory small.
pub const ZSTD_JOB_SIZE: u32 = 2 << 20;
/// How much of the previous job each job reads as history (8: half the 2 MiB window). With
/// small jobs this wins back the ratio that job boundaries cost: on a 1 GB pg_dump the
/// output is smaller than `zstd -3 -T0`'s, for about the same CPU.
pub const ZSTD_OVERLAP_LOG: u32 = 8;

/// Sizes and digests of one artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// Bytes of the native format.
    pub plain_size: u64,
    /// sha256 of the native format.
    pub plain_sha256: String,
    /// Bytes stored.
    pub size: u64,
    /// sha256 of the stored bytes.
    pub sha256: String,
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the byte count and the hex digest.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.count, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One destination's end of the fan-out.
struct Outlet {
    tx: Option<mpsc::Sender<Chunk>>,
}

/// Splits the stored stream into chunks and sends each to every live destination.
pub struct FanOut {
    outlets: Vec<Outlet>,
    buf: BytesMut,
}

impl FanOut {
    /// Fan out to these channels.
    pub fn new(senders: Vec<mpsc::Sender<Chunk>>) -> Self {
        Self {
            outlets: senders
                .into_iter()
                .map(|tx| Outlet { tx: Some(tx) })
                .collect(),
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        for o in &mut self.outlets {
            if let Some(tx) = &o.tx {
                if tx.blocking_send(Chunk::Data(chunk.clone())).is_err() {
                    o.tx = None;
                }
            }
        }
        if self.outlets.iter().all(|o| o.tx.is_none()) {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(())
    }

    /// Send what is buffered; returns the senders still live (index-aligned).
    pub fn finish(mut self) -> io::Result<Vec<Option<mpsc::Sender<Chunk>>>> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(self.outlets.into_iter().map(|o| o.tx).collect())
    }
}

impl Write for FanOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.buf.reserve(CHUNK);
            self.send(chunk)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Stored = HashingWriter<FanOut>;

/// age encryption, or none.
enum Sealer {
    Age(age::stream::StreamWriter<Stored>),
    Plain(Stored),
}

impl Write for Sealer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Age(w) => w.write(buf),
            Self::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Age(w) => w.flush(),
            Self::Plain(w) => w.flush(),
        }
    }
}

impl Sealer {
    fn finish(self) -> io::Result<Stored> {
        match self {
            Self::Age(w) => w.finish(),
            Self::Plain(w) => Ok(w),
        }
    }
}

/// The writer a source writes its native format into.
pub struct PipelineWriter {
    inner: HashingWriter<zstd::stream::write::Encoder<'static, Sealer>>,
}

/// Settings of the pipeline.
#[derive(Clone)]
pub struct PipelineSettings {
    /// age recipients; empty: no encryption.
    pub recipients: Vec<age::x25519::Recipient>,
    /// zstd level.
    pub level: i32,
    /// zstd worker threads (0: single-threaded).
    pub threads: u32,
}

impl PipelineSettings {
    /// Defaults for these recipients: level 3, one worker per core.
    pub fn new(recipients: Vec<age::x25519::Recipient>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Self {
            recipients,
            level: ZSTD_LEVEL,
            threads: cores,
        }
    }
}

impl PipelineWriter {
    /// A pipeline into `senders`.
    pub fn new(settings: &PipelineSettings, senders: Vec<mpsc::Sender<Chunk>>) -> io::Result<Self> {
        let stored = HashingWriter::new(FanOut::new(senders));
        let sealer = if settings.recipients.is_empty() {
            Sealer::Plain(stored)
        } else {
            let recipients = settings.recipients.iter().map(|r| r as &dyn age::Recipient);
            let enc = age::Encryptor::with_recipients(recipients)
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
            Sealer::Age(enc.wrap_output(stored)?)
        };
        let mut z = zstd::stream::write::Encoder::new(sealer, settings.level)?;
        z.include_checksum(true)?;
        if settings.threads > 1 {
            z.multithread(settings.threads)?;
            z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
            z.set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(
                ZSTD_OVERLAP_LOG,
            ))?;
        }
        Ok(Self {
            inner: HashingWriter::new(z),
        })
    }

    /// Bytes of native format written so far.
    pub fn plain_written(&self) -> u64 {
        self.inner.count
    }

    /// Flush compression and encryption; returns digests and the live senders.
    pub fn finish(self) -> io::Result<(Digests, Vec<Option<mpsc::Sender<Chunk>>>)> {
        let (z, plain_size, plain_sha256) = self.inner.finish();
        let sealer = z.finish()?;
        let stored = sealer.finish()?;
        let (fanout, size, sha256) = stored.finish();
        let senders = fanout.finish()?;
        Ok((
            Digests {
                plain_size,
                plain_sha256,
                size,
                sha256,
            },
            senders,
        ))
    }
}

impl Write for PipelineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // NB: flushing zstd mid-stream costs ratio; the pipeline is flushed by finish().
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::str::FromStr;

    fn run(recipients: Vec<age::x25519::Recipient>, data: &[u8]) -> (Digests, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel(QUEUE_DEPTH);
        let collector = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut committed = false;
            while let Some(c) = rx.blocking_recv() {
                match c {
                    Chunk::Data(b) => out.extend_from_slice(&b),
                    Chunk::Commit => committed = true,
                }
            }
            assert!(committed);
            out
        });
        let settings = PipelineSettings::new(recipients);
        let mut w = PipelineWriter::new(&settings, vec![tx]).expect("pipeline");
        w.write_all(data).expect("write");
        let (d, senders) = w.finish().expect("finish");
        for s in senders.into_iter().flatten() {
            s.blocking_send(Chunk::Commit).expect("commit");
        }
        let stored = collector.join().expect("collector");
        (d, stored)
    }

    #[test]
    fn encrypts_compresses_and_hashes() {
        let id = age::x25519::Identity::generate();
        let data: Vec<u8> = (0..5_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (d, stored) = run(vec![id.to_public()], &data);
        assert_eq!(d.plain_size, data.len() as u64);
        assert_eq!(d.plain_sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(d.size, stored.len() as u64);
        assert_eq!(d.sha256, hex::encode(Sha256::digest(&stored)));
        assert!(d.size < d.plain_size / 4, "compressible data shrinks");

        let dec = age::Decryptor::new(&stored[..]).expect("age header");
        let mut r = dec
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .expect("decrypts");
        let mut compressed = Vec::new();
        r.read_to_end(&mut compressed).expect("read");
        let plain = zstd::decode_all(&compressed[..]).expect("zstd");
        assert_eq!(plain, data);
    }

    #[test]
    fn without_recipients_stores_plain_zstd() {
        let (d, stored) = run(vec![], b"hello hello hello");
        assert_eq!(
            zstd::decode_all(&stored[..]).expect("zstd"),
            b"hello hello hello"
        );
        assert_eq!(d.plain_size, 17);
        let _ = age::x25519::Recipient::from_str(
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        )
        .expect("recipient parses");
    }

    #[test]
    fn a_closed_destination_is_dropped_and_the_other_continues() {
        let (tx1, rx1) = mpsc::channel(QUEUE_DEPTH);
        let (tx2, mut rx2) = mpsc::channel(QUEUE_DEPTH);
        drop(rx1);
        let collector = std::thread::spawn(move || {
            let mut n = 0;
            while let Some(Chunk::Data(b)) = rx2.blocking_recv() {
                n += b.len();
            }
            n
        });
        let mut w = PipelineWriter::new(&PipelineSettings::new(vec![]), vec![tx1, tx2]).expect("p");
        let noise: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        w.write_all(&noise).expect("write");
        let (_, senders) = w.finish().expect("finish");
        assert!(senders[0].is_none());
        assert!(senders[1].is_some());
        drop(senders);
        assert!(collector.join().expect("join") > 0);
    }

    #[test]
    fn all_destinations_gone_fails_the_writer() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = PipelineWriter::new(&PipelineSettings::new(vec![]), vec![tx]).expect("p");
        let noise: Vec<u8> = (0..8_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let r = w.write_all(&noise).and_then(|_| w.finish().map(|_| ()));
        assert!(r.is_err());
    }
}
