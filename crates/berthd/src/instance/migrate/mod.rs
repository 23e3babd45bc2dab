//! Instances between hosts: both ends of LXD's migration protocol, with rsync, stateless
//! or live (CRIU).
//!
//! ```text
//!   source                                     target
//!   control: MigrationHeader (offer) ────────►
//!            ◄──────── MigrationHeader (answer: rsync features, index header version)
//!   fs:      index header JSON, barrier ─────►
//!            ◄──────── InfoResponse JSON, barrier
//!            rsync of each snapshot, oldest first, then of the volume: the sender's bytes
//!            ─────►, the receiver's ◄─────, each direction ended by a barrier
//!   live:    CRIU dumps and holds the processes frozen ([`crate::lxc::handoff`])
//!   criu:    rsync of the dump's directory (`final/` in it) ─────►
//!   fs:      rsync of the volume once more ─────►        target restores the dump
//!   control: ◄──────── MigrationControl {success}        (a failure: either way)
//!   live:    success: CRIU ends the processes on the source; else they run on there
//! ```
//!
//! The API hands this module the [`Conns`] (`control`, `fs`, and `criu` when live): frames
//! in and out, whichever side dialled. A barrier is an empty text frame. The source runs
//! rsync as a client whose remote shell is `berthd forknetcat @SOCKET`
//! (`berth_host::netcat`), joined here to the frames; the target runs LXD's
//! `rsync --server` line with its stdio joined to them. Volumes are stored with the
//! container's ids as it sees them (berth maps them at start), so berth offers an empty id
//! map; files from a source that stores them shifted (LXD, Incus: the offer's map) are
//! shifted back on arrival. A live instance keeps its host ids (CRIU restores its user
//! namespace as it was): the target takes the source's map or refuses before any file
//! moves. The target records the instance before anything arrives and takes everything
//! back if the transfer or the restore fails.

use std::time::Duration;

use berth_api::migration::RsyncFeatures;
use tokio::sync::mpsc;

use crate::error::{Failure, Result};

mod receive;
mod refresh;
mod rsync;
mod send;

pub use receive::receive;
pub(in crate::instance) use receive::unshift;
pub use refresh::{check_refresh, receive_refresh};
pub use send::{check_send, send};

/// One websocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Binary(Vec<u8>),
    Text(String),
}

/// A migration websocket as this module sees it: frames out and in. Dropping `tx` closes
/// it; `rx` ends when the peer closed it.
#[derive(Debug)]
pub struct Conn {
    pub tx: mpsc::Sender<Frame>,
    pub rx: mpsc::Receiver<Frame>,
}

/// The websockets of a migration: `criu` for a live one.
#[derive(Debug)]
pub struct Conns {
    pub control: Conn,
    pub fs: Conn,
    pub criu: Option<Conn>,
}

/// Marks an instance still being made (created, copied, imported, arriving): one found at
/// start (berthd died meanwhile) is removed, so no half-made instance outlives a failure.
pub const INCOMING: &str = "volatile.incoming";

/// The names of the websockets a migration uses: `criu` carries a live one's dump.
pub fn streams(live: bool) -> &'static [&'static str] {
    if live {
        &["control", "fs", "criu"]
    } else {
        &["control", "fs"]
    }
}

fn gone(what: &str) -> Failure {
    Failure::unavailable(format!("The migration peer closed the {what} stream"))
}

/// How long a step of the protocol may wait for the peer (an answer, an index header).
const STEP: Duration = Duration::from_secs(60);

/// How long the source waits for the target to finish once everything is sent (its
/// snapshots made, ids shifted).
const FINISH: Duration = Duration::from_secs(600);

/// How long a stream may stay silent before the peer counts as gone.
pub(super) const IDLE: Duration = Duration::from_secs(300);

pub(super) fn silent(limit: Duration) -> Failure {
    Failure::unavailable(format!(
        "The migration peer said nothing for {} s",
        limit.as_secs()
    ))
}

impl Conn {
    async fn send(&self, f: Frame) -> Result<()> {
        self.tx.send(f).await.map_err(|_| gone("outgoing"))
    }

    async fn send_proto(&self, m: &impl prost::Message) -> Result<()> {
        self.send(Frame::Binary(m.encode_to_vec())).await
    }

    /// The next protobuf message (one binary frame), if it comes within `limit`.
    async fn recv_proto_within<M: prost::Message + Default>(
        &mut self,
        limit: Duration,
    ) -> Result<M> {
        let next = tokio::time::timeout(limit, self.rx.recv())
            .await
            .map_err(|_| silent(limit))?;
        match next {
            Some(Frame::Binary(b)) => M::decode(&b[..]).map_err(|e| {
                Failure::invalid(format!("Invalid migration message from the peer: {e}"))
            }),
            Some(Frame::Text(_)) => Err(Failure::invalid(
                "Invalid migration message from the peer: only binary messages allowed",
            )),
            None => Err(gone("control")),
        }
    }

    /// Everything up to the next barrier, each frame within `wait`.
    async fn recv_until_barrier(&mut self, limit: usize, wait: Duration) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(wait, self.rx.recv())
                .await
                .map_err(|_| silent(wait))?;
            match next {
                Some(Frame::Binary(b)) => {
                    out.extend_from_slice(&b);
                    if out.len() > limit {
                        return Err(Failure::invalid("The migration index header is too large"));
                    }
                }
                Some(Frame::Text(_)) => return Ok(out),
                None => return Err(gone("fs")),
            }
        }
    }
}

/// rsync features both sides use: the peer's (when it speaks of `bidirectional`, else
/// LXD's old three) and ours.
fn negotiate(peer: Option<&RsyncFeatures>, ours: &RsyncFeatures) -> RsyncFeatures {
    let theirs = peer.cloned().unwrap_or_default();
    let legacy = theirs.bidirectional != Some(true);
    let both =
        |t: Option<bool>, o: Option<bool>| Some((legacy || t == Some(true)) && o == Some(true));
    RsyncFeatures {
        xattrs: both(theirs.xattrs, ours.xattrs),
        delete: both(theirs.delete, ours.delete),
        compress: both(theirs.compress, ours.compress),
        bidirectional: Some(true),
    }
}

/// What berth offers: extended attributes and deletion; no compression (hosts that move
/// containers between them are close, and compressing costs more than it saves there).
fn our_features() -> RsyncFeatures {
    RsyncFeatures {
        xattrs: Some(true),
        delete: Some(true),
        compress: Some(false),
        bidirectional: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::receive::unshift;
    use super::rsync::feature_args;
    use super::*;
    use berth_api::migration::IdMapType;

    #[test]
    fn features_meet() {
        let lxd_default = RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(true),
            bidirectional: Some(true),
        };
        let f = negotiate(Some(&lxd_default), &our_features());
        assert_eq!(
            feature_args(&f),
            ["--xattrs", "--filter=-x security.selinux", "--delete"]
        );
        // A peer that never heard of `bidirectional` has LXD's old three.
        let f = negotiate(None, &our_features());
        assert_eq!(f.xattrs, Some(true));
        assert_eq!(f.bidirectional, Some(true));
    }

    #[test]
    fn unshifts_owners() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::lchown(&f, Some(1_000_005), Some(1_000_007)).unwrap();
        let maps = [
            IdMapType {
                isuid: true,
                isgid: false,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            },
            IdMapType {
                isuid: false,
                isgid: true,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            },
        ];
        unshift(dir.path(), &maps).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (5, 7));
    }
}
