//! Messages between the host's descriptor table and the spawner threads' own (`table.rs` says
//! why there are two): a submission's descriptors on the way in, each outcome with the
//! descriptors of its child on the way out.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::outcome::{Reply, SpawnOutcome, ToMonitor};
use super::table::{Given, Link, Private};
use crate::core::worker::Key;
use crate::os::passing;
use crate::runtime::child::Child;
use crate::runtime::listen::Carried;
use crate::runtime::output::{Captured, Sink, Stream};
use crate::runtime::tokens::Tokens;
use crate::sync::lock;

/// What travelled in an outcome's message, in this order.
#[derive(Default)]
pub(super) struct Sent {
    pub(super) pidfd: bool,
    pub(super) control: bool,
    pub(super) output: Option<(Captured, Vec<(Stream, Sink)>)>,
}

/// An outcome on its way to the host's table, without its descriptors.
pub(super) struct Pending {
    pub(super) key: Key,
    pub(super) reply: Reply,
    pub(super) result: Result<Child, std::io::Error>,
    pub(super) sent: Sent,
}

/// Messages between the two tables: their ids, and the outcomes whose message is on its way to
/// the host's table.
#[derive(Default)]
pub(super) struct Crossing {
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
}

impl Crossing {
    /// On a thread of the host's table (the monitor, when the arrivals are readable): hands over
    /// every outcome that has arrived from the private table, with its descriptors put back.
    /// `wake`: wake the monitor for those it gets (false: the monitor itself calls).
    pub(super) fn collect(
        &self,
        (sock, token): (&OwnedFd, u64),
        tokens: &Tokens,
        monitor: &ToMonitor,
        wake: bool,
    ) {
        let mut buf = [0u8; 8];
        let mut any = false;
        loop {
            let (n, fds) = match passing::receive(sock.as_raw_fd(), &mut buf, false) {
                Ok(got) => got,
                // WouldBlock: all taken; anything else: the next readiness tries again.
                Err(_) => break,
            };
            if n == 0 {
                // The end: every spawner thread has exited, and with them their table. Not
                // readable any more for the monitor.
                tokens.unwatch(sock.as_fd(), token);
                break;
            }
            if n != 8 {
                continue;
            }
            let id = u64::from_ne_bytes(buf);
            let Some(p) = lock(&self.pending).remove(&id) else {
                continue;
            };
            let result = p.result.and_then(|child| restore(child, p.sent, fds));
            any |= p.reply.send(monitor, SpawnOutcome { key: p.key, result });
        }
        if any && wake {
            monitor.wake.set();
        }
    }

    /// Sends the host's 0, 1, 2 (those open now) and the carried descriptors to the private
    /// table, as one message.
    pub(super) fn ship(&self, link: &Link, carried: &Carried) -> std::io::Result<Given> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let carried_fds: Vec<RawFd> = carried
            .iter()
            .flat_map(|(_, fds)| fds.iter().map(AsRawFd::as_raw_fd))
            .collect();
        let mut attempt = 0;
        loop {
            // Usually all three are open: they are looked at only when the send says one is not.
            let open: Vec<RawFd> = (0..3)
                .filter(|&fd| attempt == 0 || passing::is_open(fd))
                .collect();
            let stdio = open.iter().fold(0u8, |bits, &fd| bits | 1 << fd);
            let fds: Vec<RawFd> = open
                .into_iter()
                .chain(carried_fds.iter().copied())
                .collect();
            if fds.len() > passing::MAX_FDS {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("more than {} descriptors for one spawn", passing::MAX_FDS),
                ));
            }
            match passing::send(link.to_private.as_raw_fd(), &id.to_ne_bytes(), &fds, false) {
                Ok(()) => {
                    return Ok(Given::Shipped {
                        id,
                        stdio,
                        groups: carried
                            .iter()
                            .map(|(g, fds)| (g.clone(), fds.len()))
                            .collect(),
                        arrived: OnceLock::new(),
                    })
                }
                // One of 0, 1, 2 is closed (or was closed meanwhile).
                Err(e) if e.raw_os_error() == Some(libc::EBADF) && attempt < 3 => attempt += 1,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("passing the host's descriptors to the spawner: {e}"),
                    ))
                }
            }
        }
    }
}

impl Crossing {
    /// On a spawner thread with a table of its own: passes an outcome on through the arrivals
    /// socket (its descriptors must reach the host's table, and the monitor's wake flag is a number
    /// of that table; the monitor's epoll set sees the socket).
    pub(super) fn hand_over(
        &self,
        private: &Private,
        monitor: &ToMonitor,
        reply: &Reply,
        key: Key,
        result: Result<Child, std::io::Error>,
    ) {
        // Numbers of this table, closed here once sent.
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut sent = Sent::default();
        let result = result.map(|mut child| {
            if let Some(fd) = child.pidfd.take() {
                fds.push(fd);
                sent.pidfd = true;
            }
            if let Some(fd) = child.control.take() {
                fds.push(fd);
                sent.control = true;
            }
            if let Some(mut captured) = child.output.take() {
                let mut streams = Vec::new();
                for (stream, fd, sink) in captured.pipes.drain(..) {
                    fds.push(fd);
                    streams.push((stream, sink));
                }
                sent.output = Some((captured, streams));
            }
            child
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            key,
            reply: reply.clone(),
            result,
            sent,
        };
        lock(&self.pending).insert(id, pending);
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let Err(e) = passing::send(private.outbox, &id.to_ne_bytes(), &raw, true) else {
            return;
        };
        // It cannot travel with its descriptors: the child is killed (dropped here), the failure
        // travels alone.
        let Some(p) = lock(&self.pending).remove(&id) else {
            return;
        };
        drop(p.result);
        let e = std::io::Error::new(e.kind(), format!("passing a child's descriptors: {e}"));
        let failed = Pending {
            key,
            reply: p.reply,
            result: Err(e),
            sent: Sent::default(),
        };
        lock(&self.pending).insert(id, failed);
        if passing::send(private.outbox, &id.to_ne_bytes(), &[], true).is_err() {
            // Not even that: handed over without waking the monitor (its flag is not in this
            // table); it finds the outcome on its next round.
            if let Some(p) = lock(&self.pending).remove(&id) {
                let outcome = SpawnOutcome {
                    key,
                    result: p.result,
                };
                p.reply.send(monitor, outcome);
            }
        }
    }
}

/// Gives a child back the descriptors that arrived for it, in the order `hand_over` sent them.
pub(super) fn restore(mut child: Child, sent: Sent, fds: Vec<OwnedFd>) -> std::io::Result<Child> {
    let mut fds = fds.into_iter();
    let emfile = || std::io::Error::from_raw_os_error(libc::EMFILE);
    if sent.pidfd {
        // Missing: its exit is polled for.
        child.pidfd = fds.next();
    }
    if sent.control {
        child.control = fds.next();
        if child.control.is_none() {
            child.channel_error = Some(emfile().to_string());
        }
    }
    if let Some((mut captured, streams)) = sent.output {
        for (stream, sink) in streams {
            let fd = fds.next().ok_or_else(|| {
                let e = emfile();
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "receiving the pipe of the captured {}: {e}",
                        stream.as_str()
                    ),
                )
            })?;
            captured.pipes.push((stream, fd, sink));
        }
        child.output = Some(captured);
    }
    Ok(child)
}
