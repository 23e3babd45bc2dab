//! A driver's own volume streams (`btrfs send` and `receive`): what an optimized backup
//! holds instead of trees.
//!
//! A [`Sender`] freezes a volume and its snapshots as they are at that moment and gives
//! one stream per subvolume, snapshots first (oldest first), each a delta against the one
//! before. A stream can be read twice and gives the same bytes both times, so a tarball
//! writer can learn a member's size before it writes it, without staging anything on disk.
//! A [`Receiver`] takes streams in the same order into a holding place of the pool and, at
//! [`Receiver::finish`], puts them in place as a volume and its snapshots.

use std::io::{self, Read};

use crate::StorageError;

/// A volume and its snapshots frozen for sending; dropped, it removes what it froze.
pub trait Sender: Send {
    /// How many streams there are: one per snapshot asked for, then the volume's.
    fn count(&self) -> usize;
    /// Stream `i` (`0..count()`), read from its start; the same bytes each time. A read
    /// fails (rather than ending early) when the driver's tool fails.
    fn stream(&self, i: usize) -> Result<Box<dyn Read + Send>, StorageError>;
}

/// Streams received into a pool's holding place; dropped before
/// [`finish`](Receiver::finish), it removes what it received.
pub trait Receiver: Send {
    /// Receives one whole stream from `input`: the snapshot `snapshot`'s, or the volume's
    /// when `None`. Streams come in the order they were sent (a delta needs its base).
    fn receive(&mut self, snapshot: Option<&str>, input: &mut dyn Read)
    -> Result<(), StorageError>;
    /// Puts what was received in place: the volume (writable) and each snapshot
    /// received, under the names given at [`receive`](Receiver::receive). Refuses,
    /// touching nothing, when the volume's stream did not come. On failure, what it
    /// placed goes.
    fn finish(self: Box<Self>) -> Result<(), StorageError>;
}

/// Reads `inner` and checks it gives exactly `expected` bytes: a stream that changed
/// between two reads fails rather than break the archive it is written into.
#[derive(Debug)]
pub struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    pub fn new(inner: R, expected: u64) -> Self {
        Exact {
            inner,
            left: expected,
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // The end must be the stream's end too (which also reaps the tool behind it).
            let mut one = [0u8; 1];
            return match self.inner.read(&mut one)? {
                0 => Ok(0),
                _ => Err(io::Error::other("the volume's stream grew between reads")),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other("the volume's stream shrank between reads"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut r = r;
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn exact_passes_the_expected_length_only() {
        assert_eq!(read_all(Exact::new(&b"abcd"[..], 4)).unwrap(), b"abcd");
        let e = read_all(Exact::new(&b"abcd"[..], 3)).unwrap_err();
        assert!(e.to_string().contains("grew"), "{e}");
        let e = read_all(Exact::new(&b"abcd"[..], 5)).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
        assert_eq!(read_all(Exact::new(&b""[..], 0)).unwrap(), b"");
    }
}
