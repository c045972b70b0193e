//! The spawner threads' descriptor table of their own, and how descriptors cross into it and
//! back.
//!
//! `posix_spawn` (a `clone` without `CLONE_FILES`) copies the spawning thread's whole descriptor
//! table into the child, and the child's `exec` then closes every close-on-exec entry: a spawn
//! costs time in proportion to the descriptors the spawner holds. The supervisor holds two per
//! worker (pidfd, control socket) and more with captured output, so in the host's table each
//! spawn of a big start cost more than the one before. The spawner threads therefore run in a
//! table of their own: the first one calls `unshare(CLONE_FILES)`, closes its copy of every
//! descriptor but the few it uses (the two sockets below, the keeper's socket) and puts
//! `/dev/null` on 0, 1 and 2; the others are started from spawner threads, so they share that
//! small table. A spawn then copies a handful of descriptors whatever the number of workers.
//!
//! Descriptors cross between the two tables as `SCM_RIGHTS` messages on two `SOCK_SEQPACKET`
//! pairs made before the `unshare`, one end in each table:
//! - in: each submission (made on a thread of the host's table: a host call or the monitor)
//!   sends, once, the host's descriptors 0, 1 and 2 as they are at that moment (so `"inherit"`
//!   means the host's stdout when the start, scale or respawn was asked for, even in a host that
//!   `dup2`s another file onto it between calls) and the descriptors it carries for its groups
//!   (`Carried`). The first job of the submission to run receives them (a message of another
//!   submission met on the way is kept for it); the last to finish closes them.
//! - out: each outcome (its `Child` waits in `pending`, by message id) is sent with the
//!   descriptors the supervisor keeps of the child (pidfd, control socket, captured output's read
//!   ends) to a socket in the monitor's epoll set; the monitor receives them outside the engine's
//!   lock (`collect`), puts them back in their children and hands the outcomes on (to itself, or
//!   to the waiting host call). A descriptor that does not fit in the host's table (EMFILE)
//!   arrives missing: the pidfd falls back to polling, the control socket to signals (as when
//!   they cannot be made), a captured stream fails the spawn. Everything the spawner threads
//!   touch is in their table: nothing of the host's table (the monitor's wake flag, a worker's
//!   socket) is ever used from there by number, and nothing of theirs is ever closed by a drop on
//!   a thread of the host's table (`Arrived`, `Private` hold plain numbers there).
//!
//! Nothing the host opens reaches a worker: descriptors the host leaks without close-on-exec
//! after the first spawn are not in the spawner's table at all, and those it held before were
//! closed there. The listing of leaked descriptors before each submission's spawns (and the
//! `closefrom` in the child) is needed only in the fallback: where `unshare` is refused (seccomp,
//! some sandboxes), `/proc/thread-self` cannot be read, or `Options::private_fd_table` is off,
//! the spawner threads share the host's table as before.
//!
//! A child the host forks has only the forking thread, and a copy of the host's table: it holds
//! no spawner thread, no private table, and only close-on-exec copies of the two host-side
//! socket ends. valgrind (3.19) runs `unshare(CLONE_FILES)` in a thread as the kernel does, and
//! refuses to let its own descriptors be closed, so `make test-valgrind` takes this path too.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::outcome::{error, failure, Failure, Reply};
use crate::os;
use crate::os::passing;
use crate::os::spawn::SpawnAttributes;
use crate::runtime::listen::Carried;
use crate::runtime::tokens::{Source, Tokens};
use crate::sync::lock;

/// What the jobs of one submission share.
pub(super) struct Batch {
    pub(super) reply: Reply,
    attrs: OnceLock<Result<SpawnAttributes, Failure>>,
    given: Given,
    /// Jobs not finished: the last one to finish closes what arrived for them.
    left: AtomicUsize,
}

/// The descriptors a submission gives its spawns.
pub(super) enum Given {
    /// The spawner threads share the host's table: the carried descriptors as they are, and the
    /// spawning thread's own 0, 1 and 2.
    Here(Carried),
    /// Sent to the private table as message `id`: the host's 0, 1 and 2 that were open (`stdio`
    /// bits), then each group's carried descriptors (`groups`: how many).
    Shipped {
        id: u64,
        stdio: u8,
        groups: Vec<(String, usize)>,
        arrived: OnceLock<Result<Arrived, Failure>>,
    },
}

/// What arrived in the private table for a submission.
pub(super) struct Arrived {
    pub(super) stdio: [Option<usize>; 3],
    pub(super) groups: Vec<(String, std::ops::Range<usize>)>,
    /// Numbers of the private table: closed only there (by the submission's last job), never by a
    /// drop, which may run on a thread of the host's table, where they name other descriptors.
    pub(super) fds: Vec<OwnedFd>,
}

impl Drop for Arrived {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            let _ = fd.into_raw_fd();
        }
    }
}

/// The descriptors one spawn gets from its submission.
pub(super) struct View<'a> {
    pub(super) stdio: Option<[Option<&'a OwnedFd>; 3]>,
    pub(super) carried: &'a [OwnedFd],
}

impl Batch {
    pub(super) fn new(reply: Reply, given: Given, jobs: usize) -> Batch {
        Batch {
            reply,
            attrs: OnceLock::new(),
            given,
            left: AtomicUsize::new(jobs),
        }
    }

    pub(super) fn attrs(&self, private: bool) -> std::io::Result<&SpawnAttributes> {
        self.attrs
            .get_or_init(|| {
                if private {
                    SpawnAttributes::for_private_table()
                } else {
                    SpawnAttributes::new()
                }
                .map_err(|e| failure(&e))
            })
            .as_ref()
            .map_err(error)
    }

    /// On a spawner thread: what the spawns of `group` get.
    pub(super) fn view(&self, private: Option<&Private>, group: &str) -> std::io::Result<View<'_>> {
        match &self.given {
            Given::Here(carried) => Ok(View {
                stdio: None,
                carried: carried
                    .iter()
                    .find(|(g, _)| g == group)
                    .map_or(&[][..], |(_, fds)| &fds[..]),
            }),
            Given::Shipped {
                id,
                stdio,
                groups,
                arrived,
            } => {
                let private = private.ok_or_else(|| std::io::Error::other("no private table"))?;
                let a = arrived
                    .get_or_init(|| private.claim(*id, *stdio, groups))
                    .as_ref()
                    .map_err(error)?;
                let range = a
                    .groups
                    .iter()
                    .find(|(g, _)| g == group)
                    .map_or(0..0, |(_, r)| r.clone());
                Ok(View {
                    stdio: Some(a.stdio.map(|i| i.map(|i| &a.fds[i]))),
                    carried: &a.fds[range],
                })
            }
        }
    }

    /// On a spawner thread, after one of its jobs: the last one closes what arrived.
    pub(super) fn finished(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let Given::Shipped { arrived, .. } = &self.given {
            if let Some(Ok(a)) = arrived.get() {
                for fd in &a.fds {
                    passing::close_number(fd.as_raw_fd());
                }
            }
        }
    }
}

/// The spawner threads' ends of the two socket pairs, numbers of their private table.
pub(super) struct Private {
    pub(super) inbox: RawFd,
    pub(super) outbox: RawFd,
    /// Submissions' descriptors received while looking for another's, by message id (numbers of
    /// the private table, closed with it if never claimed).
    pub(super) early: Mutex<HashMap<u64, Vec<RawFd>>>,
}

impl Private {
    /// Receives submission `id`'s descriptors. Its message was sent before its jobs were queued,
    /// so it is there, possibly behind others'.
    pub(super) fn claim(
        &self,
        id: u64,
        stdio: u8,
        groups: &[(String, usize)],
    ) -> Result<Arrived, Failure> {
        let raw = {
            let mut early = lock(&self.early);
            loop {
                if let Some(fds) = early.remove(&id) {
                    break fds;
                }
                let mut buf = [0u8; 8];
                match passing::receive(self.inbox, &mut buf, true) {
                    Ok((8, fds)) => {
                        let got = u64::from_ne_bytes(buf);
                        early.insert(got, fds.into_iter().map(IntoRawFd::into_raw_fd).collect());
                    }
                    Ok(_) => {
                        return Err((
                            std::io::ErrorKind::BrokenPipe,
                            "the host's descriptors did not reach the spawner".into(),
                        ))
                    }
                    Err(e) => return Err(failure(&e)),
                }
            }
        };
        // SAFETY: received into this table just now; nothing else owns them.
        let fds: Vec<OwnedFd> = raw
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        let wanted = stdio.count_ones() as usize + groups.iter().map(|(_, n)| n).sum::<usize>();
        if fds.len() < wanted {
            let e = std::io::Error::from_raw_os_error(libc::EMFILE);
            return Err((
                e.kind(),
                format!("receiving the host's descriptors in the spawner's table: {e}"),
            ));
        }
        let mut next = 0..;
        let mut slots = [None; 3];
        for (i, slot) in slots.iter_mut().enumerate() {
            if stdio & (1 << i) != 0 {
                *slot = next.next();
            }
        }
        let mut at = next.next().unwrap_or(0);
        let groups = groups
            .iter()
            .map(|(g, n)| {
                let range = at..at + n;
                at += n;
                (g.clone(), range)
            })
            .collect();
        Ok(Arrived {
            stdio: slots,
            groups,
            fds,
        })
    }
}

/// The host-table side of the private table: where submissions send, and where outcomes
/// arrive (watched by the monitor's epoll set as `Source::Spawned`).
pub(super) struct Link {
    pub(super) to_private: OwnedFd,
    pub(super) from_private: Arc<OwnedFd>,
    /// The token of `from_private`.
    pub(super) token: u64,
}

impl Link {
    /// The two socket pairs, the arrivals watched in `tokens` (the monitor's epoll set): the
    /// link, and the spawner threads' two ends (the inbox's receiving end, the outbox's sending
    /// end), still in the host's table.
    pub(super) fn open(tokens: &Tokens) -> std::io::Result<(Link, OwnedFd, OwnedFd)> {
        let (to_private, inbox) = passing::message_pair()?;
        let (outbox, from_private) = passing::message_pair()?;
        os::set_nonblocking(&from_private)?;
        let token = tokens.watch(from_private.as_fd(), Source::Spawned)?;
        let link = Link {
            to_private,
            from_private: Arc::new(from_private),
            token,
        };
        Ok((link, inbox, outbox))
    }

    pub(super) fn close(self, tokens: &Tokens) {
        tokens.unwatch(self.from_private.as_fd(), self.token);
    }
}

/// On the first spawner thread: gives it a table of its own that holds only `inbox`, `outbox`,
/// `keep` and `/dev/null` on 0, 1 and 2. None (and the table stays the host's) where that
/// cannot be had.
pub(super) fn enter(inbox: RawFd, outbox: RawFd, keep: &[RawFd]) -> Option<Private> {
    // Where `/dev/null` cannot be had the copies of the host's 0, 1 and 2 stay: every spawn
    // replaces or closes them in the child all the same.
    let kept: Vec<RawFd> = [inbox, outbox].iter().chain(keep).copied().collect();
    passing::enter_private_table(&kept).then(|| Private {
        inbox,
        outbox,
        early: Mutex::new(HashMap::new()),
    })
}
