//! The supervisor's sd_notify socket: one abstract-namespace datagram socket per supervisor,
//! made when the first `sd_notify` group is prepared. Each datagram names its sender through
//! SCM_CREDENTIALS (the kernel's word, not the sender's); it counts for the worker whose
//! process sent it, or with `notify_access: all` whose process group the sender is in.
//! Anything else (a stranger, a malformed or truncated datagram) is dropped and counted.
//!
//! A child of the host that is no worker yet may be one that was spawned and not adopted yet
//! (a fast daemon says `READY=1` before `start_groups` has adopted the whole batch): its
//! datagrams wait, at most `PENDING_FOR` and `MAX_PENDING` of them, for its adoption.
//!
//! One socket rather than one per worker: a spawn then costs no socket, bind or epoll call,
//! and a datagram costs one hash lookup (see bench/notify_latency.py for the figures).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::NotifyAccess;
use crate::core::notify::NotifyMessage;
use crate::core::worker::Key;
use crate::os::notify::{self as sys, Datagram};
use crate::runtime::tokens::{Source, Tokens};

/// Datagrams read per wakeup; level-triggered epoll brings the monitor back for more.
const PER_WAKEUP: usize = 64;
/// The longest datagram accepted; a longer one is truncated by the kernel and dropped here.
const MAX_DATAGRAM: usize = 4096;
/// How long a datagram of a child not adopted yet waits for its adoption.
const PENDING_FOR: Duration = Duration::from_secs(2);
/// The most such datagrams kept; the oldest is dropped for a new one.
const MAX_PENDING: usize = 256;

/// A datagram from a child of the host that is not (yet) a tracked worker.
struct Pending {
    pid: i32,
    group: i32,
    at: Instant,
    message: NotifyMessage,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

pub struct Notify {
    tokens: Arc<Tokens>,
    /// The socket, its token and its address, once made.
    socket: Option<(OwnedFd, u64, String)>,
    /// The sd_notify workers by pid.
    by_pid: HashMap<i32, (Key, NotifyAccess)>,
    pending: VecDeque<Pending>,
    pub received: u64,
    pub dropped: u64,
}

impl Notify {
    /// Made when the first `sd_notify` group needs it (`address`), in `tokens`.
    pub fn new(tokens: Arc<Tokens>) -> Notify {
        Notify {
            tokens,
            socket: None,
            by_pid: HashMap::new(),
            pending: VecDeque::new(),
            received: 0,
            dropped: 0,
        }
    }

    /// The socket's number and address, for the next image of the host (`handover`).
    pub(crate) fn export(&self) -> Option<(std::os::fd::RawFd, String)> {
        use std::os::fd::AsRawFd;
        self.socket
            .as_ref()
            .map(|(fd, _, a)| (fd.as_raw_fd(), a.clone()))
    }

    /// The socket the previous image of the host made (`export`), watched again.
    pub(crate) fn resume(&mut self, fd: OwnedFd, address: String) -> std::io::Result<()> {
        let token = self.tokens.watch(fd.as_fd(), Source::Notify)?;
        self.socket = Some((fd, token, address));
        Ok(())
    }

    /// `NOTIFY_SOCKET` for the workers, when the socket exists.
    pub fn address(&self) -> Option<&str> {
        self.socket.as_ref().map(|(_, _, a)| a.as_str())
    }

    /// The socket's `NOTIFY_SOCKET` value, making the socket the first time.
    pub(crate) fn open(&mut self) -> std::io::Result<String> {
        if let Some(address) = self.address() {
            return Ok(address.to_string());
        }
        // A name another process took (the abstract namespace is shared by the network
        // namespace) is skipped: the next serial gives another.
        let mut attempt = 0;
        let (name, fd) = loop {
            let name = format!(
                "mpsup-notify-{}-{}-{:x}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed),
                clock::now_ms()
            );
            match sys::notify_socket(&name) {
                Ok(fd) => break (name, fd),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let token = self.tokens.watch(fd.as_fd(), Source::Notify)?;
        let address = format!("@{name}");
        self.socket = Some((fd, token, address.clone()));
        Ok(address)
    }

    /// Datagrams from `pid` (and with `access` all, from its process group) count for `key`.
    /// Returns those it sent before it was adopted, in order.
    pub(crate) fn track(&mut self, key: Key, pid: i32, access: NotifyAccess) -> Vec<NotifyMessage> {
        self.by_pid.insert(pid, (key, access));
        self.expire(Instant::now());
        let mut mine = Vec::new();
        let mut rest = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.pid == pid || (access == NotifyAccess::All && p.group == pid) {
                mine.push(p.message);
            } else {
                rest.push_back(p);
            }
        }
        self.pending = rest;
        mine
    }

    pub(crate) fn untrack(&mut self, key: Key, pid: i32) {
        if self.by_pid.get(&pid).is_some_and(|(k, _)| *k == key) {
            self.by_pid.remove(&pid);
        }
    }

    /// Reads the datagrams waiting now (bounded), and returns those of known workers parsed.
    pub(crate) fn read(&mut self) -> Vec<(Key, NotifyMessage)> {
        let mut out = Vec::new();
        // Out of the table while it is read, so the table can change meanwhile.
        let Some(socket) = self.socket.take() else {
            return out;
        };
        let fd = &socket.0;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for _ in 0..PER_WAKEUP {
            let (len, truncated, pid) = match sys::recv_datagram(fd, &mut buf) {
                Ok(Datagram::Data {
                    len,
                    truncated,
                    pid,
                }) => (len, truncated, pid),
                Ok(Datagram::WouldBlock) | Err(_) => break,
            };
            self.received += 1;
            let message = (!truncated)
                .then(|| NotifyMessage::parse(&buf[..len.min(buf.len())]).ok())
                .flatten();
            let (Some(pid), Some(message)) = (pid, message) else {
                self.dropped += 1;
                continue;
            };
            match sender(&self.by_pid, pid) {
                Sender::Worker(key) => out.push((key, message)),
                Sender::Child(group) => self.hold(Pending {
                    pid,
                    group,
                    at: Instant::now(),
                    message,
                }),
                Sender::Stranger => self.dropped += 1,
            }
        }
        self.socket = Some(socket);
        self.expire(Instant::now());
        out
    }

    fn hold(&mut self, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(pending);
    }

    /// Drops (and counts) what waited too long for an adoption.
    fn expire(&mut self, now: Instant) {
        while self
            .pending
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.at) >= PENDING_FOR)
        {
            self.pending.pop_front();
            self.dropped += 1;
        }
    }
}

/// Who sent a datagram.
enum Sender {
    /// A tracked worker (or a process of its group, with `notify_access: all`).
    Worker(Key),
    /// A child of the host, maybe a worker not adopted yet (with its process group).
    Child(i32),
    Stranger,
}

fn sender(by_pid: &HashMap<i32, (Key, NotifyAccess)>, pid: i32) -> Sender {
    if let Some(&(key, _)) = by_pid.get(&pid) {
        return Sender::Worker(key);
    }
    let Some((parent, group)) = sys::parent_and_group(pid) else {
        return Sender::Stranger;
    };
    // Each worker leads its own process group, so the group id is the worker's pid.
    if let Some(&(key, NotifyAccess::All)) = by_pid.get(&group) {
        return Sender::Worker(key);
    }
    // A worker is spawned as the host's child, in a group of its own.
    if parent == std::process::id() as i32 && group == pid {
        return Sender::Child(group);
    }
    Sender::Stranger
}
