//! Reading an artifact back: store → sha256 → age → zstd → sha256, as a blocking `Read`.
//! Both digests and sizes are compared with the manifest once the stream is drained, so a
//! truncated, tampered or swapped artifact is caught; age's own authentication catches
//! tampering even earlier.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use arca_api::manifest::ComponentRecord;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::store::{Store, StoreError};

/// Why an artifact cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity does not open it.
    #[error("the age identity does not match the recipients of this snapshot: use the key that belongs to one of {0}")]
    WrongKey(String),
    /// The snapshot is encrypted but no identity was given.
    #[error("snapshot is encrypted: set encryption.ageIdentityFile in the policy (or ARCA_AGE_IDENTITY_FILE)")]
    NoKey,
    /// Decryption or decompression failed.
    #[error("{object} is damaged ({detail}): restore from another destination or snapshot, and check that storage")]
    Damaged {
        /// Object name.
        object: String,
        /// What failed.
        detail: String,
    },
    /// The digest does not match the manifest.
    #[error("{object} does not match its manifest ({what}): the artifact is truncated or was modified; restore from another destination or snapshot")]
    Mismatch {
        /// Object name.
        object: String,
        /// Which check failed.
        what: String,
    },
}

#[derive(Default)]
struct Tally {
    hasher: Sha256,
    count: u64,
}

/// A reader that hashes what passes through into shared state.
struct Hashing<R> {
    inner: R,
    tally: Arc<Mutex<Tally>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut t) = self.tally.lock() {
            t.hasher.update(&buf[..n]);
            t.count += n as u64;
        }
        Ok(n)
    }
}

/// Blocking reader over chunks fed by an async task or a [`pump`] thread.
struct Bridge {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for Bridge {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Size of the chunks [`pump`] hands over.
const PUMP_CHUNK: usize = 1 << 20;

/// Read `inner` on a thread of its own, in whole chunks, into a [`Bridge`] (a bounded
/// channel: a few chunks of memory). Dropping the bridge stops the thread at its next chunk.
fn pump(mut inner: impl Read + Send + 'static) -> Bridge {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; PUMP_CHUNK];
        let mut filled = 0;
        // Fill whole chunks: decoders return small pieces.
        let res = loop {
            match inner.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) if filled + n == buf.len() => {
                    filled += n;
                    break Ok(());
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let end = filled < buf.len();
        buf.truncate(filled);
        if filled > 0 && tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return;
        }
        match res {
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            Ok(()) if end => return,
            Ok(()) => {}
        }
    });
    Bridge {
        rx,
        cur: Bytes::new(),
    }
}

/// Progress of a read, in stored bytes (for progress lines).
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Tally>>);

impl Progress {
    /// Stored bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.lock().map(|t| t.count).unwrap_or(0)
    }
}

/// An open artifact: read the plain native format from it, then call [`Artifact::finish`].
pub struct Artifact {
    reader: Box<dyn Read + Send>,
    stored: Arc<Mutex<Tally>>,
    plain: Arc<Mutex<Tally>>,
    record: ComponentRecord,
}

impl Read for Artifact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Artifact {
    /// Stored-bytes progress handle.
    pub fn progress(&self) -> Progress {
        Progress(self.stored.clone())
    }

    /// Drain what the consumer left unread and compare sizes and digests.
    pub fn finish(mut self) -> Result<(), UnsealError> {
        io::copy(&mut self.reader, &mut io::sink()).map_err(|e| damaged(&self.record.object, e))?;
        let take = |t: &Arc<Mutex<Tally>>| {
            t.lock()
                .map(|mut g| {
                    let h = std::mem::take(&mut g.hasher);
                    (g.count, hex::encode(h.finalize()))
                })
                .unwrap_or_default()
        };
        let (size, sha) = take(&self.stored);
        let (plain_size, plain_sha) = take(&self.plain);
        let obj = self.record.object.clone();
        let mismatch = |what: String| {
            Err(UnsealError::Mismatch {
                object: obj.clone(),
                what,
            })
        };
        if size != self.record.size {
            return mismatch(format!(
                "{size} bytes stored, manifest says {}",
                self.record.size
            ));
        }
        if sha != self.record.sha256 {
            return mismatch("sha256 of the stored bytes differs".into());
        }
        if plain_size != self.record.plain_size || plain_sha != self.record.plain_sha256 {
            return mismatch("sha256 of the decompressed content differs".into());
        }
        Ok(())
    }
}

fn damaged(object: &str, e: io::Error) -> UnsealError {
    UnsealError::Damaged {
        object: object.to_string(),
        detail: e.to_string(),
    }
}

/// Open `key` at `store` for reading as the plain native format. Must be called from a
/// tokio context; the returned reader must be used from a blocking thread.
pub async fn open(
    store: &Store,
    key: &str,
    record: &ComponentRecord,
    identities: &[age::x25519::Identity],
    recipients: &[String],
) -> Result<Artifact, UnsealError> {
    let (mut stream, _len) = store.get_stream(key).await?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let stored = Arc::new(Mutex::new(Tally::default()));
    let plain = Arc::new(Mutex::new(Tally::default()));
    let object = record.object.clone();
    let recipients = recipients.to_vec();
    let ids: Vec<age::x25519::Identity> = identities.to_vec();
    let stored2 = stored.clone();
    let plain2 = plain.clone();
    // Building the age reader reads the header, which blocks on the bridge.
    let reader =
        tokio::task::spawn_blocking(move || -> Result<Box<dyn Read + Send>, UnsealError> {
            let hashed = Hashing {
                inner: Bridge {
                    rx,
                    cur: Bytes::new(),
                },
                tally: stored2,
            };
            let decrypted: Box<dyn Read + Send> = if recipients.is_empty() {
                Box::new(hashed)
            } else {
                if ids.is_empty() {
                    return Err(UnsealError::NoKey);
                }
                let dec = age::Decryptor::new(hashed).map_err(|e| UnsealError::Damaged {
                    object: object.clone(),
                    detail: format!("not an age file: {e}"),
                })?;
                let r = dec
                    .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
                    .map_err(|e| match e {
                        age::DecryptError::NoMatchingKeys => {
                            UnsealError::WrongKey(recipients.join(", "))
                        }
                        other => UnsealError::Damaged {
                            object: object.clone(),
                            detail: other.to_string(),
                        },
                    })?;
                Box::new(r)
            };
            let z = zstd::stream::read::Decoder::new(decrypted).map_err(|e| damaged(&object, e))?;
            // Decryption and decompression run on their own thread, so the consumer's work
            // (the plain digest, writing a file, feeding a tool) overlaps with them.
            Ok(Box::new(Hashing {
                inner: pump(z),
                tally: plain2,
            }))
        })
        .await
        .map_err(|e| UnsealError::Damaged {
            object: record.object.clone(),
            detail: e.to_string(),
        })??;
    Ok(Artifact {
        reader,
        stored,
        plain,
        record: record.clone(),
    })
}

/// Read identities for a policy: `ARCA_AGE_IDENTITY_FILE` wins over the policy's file.
pub fn identities_for(identity_file: Option<&str>) -> Result<Vec<age::x25519::Identity>, String> {
    let path = std::env::var("ARCA_AGE_IDENTITY_FILE")
        .ok()
        .or_else(|| identity_file.map(str::to_string));
    match path {
        Some(p) => crate::keys::read_identities(&p),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns small pieces, then fails.
    struct Trickle {
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("broken"));
            }
            let n = buf.len().min(self.left).min(1000);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn pump_hands_over_every_byte_then_the_error() {
        let mut r = pump(Trickle {
            left: PUMP_CHUNK + 123,
        });
        let mut got = Vec::new();
        let err = r
            .read_to_end(&mut got)
            .expect_err("the error comes through");
        assert_eq!(err.to_string(), "broken");
        assert_eq!(got.len(), PUMP_CHUNK + 123);
        assert!(got.iter().all(|b| *b == 7));
    }

    #[test]
    fn pump_ends_cleanly_at_eof() {
        let data: Vec<u8> = (0..3 * PUMP_CHUNK as u32).map(|i| i as u8).collect();
        let mut r = pump(io::Cursor::new(data.clone()));
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("reads");
        assert_eq!(got, data);
    }
}
