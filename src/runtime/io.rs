//! The descriptors of the workers' processes and the effects that act on them. Each descriptor
//! the monitor watches is registered in the one token table (`tokens.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use crate::core::effects::Effect;
use crate::core::worker::Key;
use crate::lines::{LineReader, MAX_LINE};
use crate::os::{self, ChildState, ReadResult};
use crate::protocol::to_worker;
use crate::runtime::child::Child;
use crate::runtime::events_out::EventsOut;
use crate::runtime::lifeline::Lifeline;
use crate::runtime::listen::Listeners;
use crate::runtime::notify::Notify;
use crate::runtime::output::Captures;
use crate::runtime::probes::Prober;
use crate::runtime::reaper::{self, Exit, Reaper};
use crate::runtime::sending::{self, Unlocked};
use crate::runtime::spawner::{Reply, Spawner};
use crate::runtime::tokens::{Source, Tokens};
use crate::sync::lock;

/// The supervisor's end of a worker's control socket: the reader of incoming lines, and
/// outgoing bytes the worker has not taken yet.
struct Channel {
    fd: Arc<OwnedFd>,
    token: u64,
    reader: LineReader,
    outbox: Vec<u8>,
    /// Whether the epoll set watches it for room to write (while `outbox` holds bytes).
    watching_room: bool,
    /// Whether a line is on its way outside the lock (`sending.rs`): `outbox` waits for it.
    sending: bool,
}

struct Proc {
    pid: i32,
    pidfd: Option<(OwnedFd, u64)>,
    channel: Option<Channel>,
}

/// A worker process's descriptors by number, as they cross an `exec` of the host (`handover`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProcFds {
    pub key: Key,
    pub pid: i32,
    pub pidfd: Option<std::os::fd::RawFd>,
    pub control: Option<std::os::fd::RawFd>,
}

/// What one read of a control socket brought.
#[derive(Debug, Default)]
pub struct ChannelRead {
    pub lines: Vec<Vec<u8>>,
    pub closed: bool,
    pub error: Option<String>,
}

pub struct Io {
    tokens: Arc<Tokens>,
    procs: HashMap<Key, Proc>,
    /// Workers without a pidfd, whose exits the monitor polls for.
    polled: BTreeSet<Key>,
    spawner: Arc<Spawner>,
    /// The host's events: to the log writer and the event fd.
    pub out: EventsOut,
    /// Why a SIGKILL could not be sent to a worker, for the report when it outlives the bound,
    /// and whether the kernel refused it (EPERM: no later try changes that, so nobody waits).
    pub kill_errors: HashMap<Key, (String, bool)>,
    /// The workers' cgroups and the keeper: told of kills and reaps.
    lifeline: Arc<Lifeline>,
    /// The groups' listen sockets: respawns carry the shared ones to the spawner.
    listeners: Arc<Listeners>,
    /// Captured output, behind its own lock (shared with the monitor).
    pub(crate) captures: Arc<Mutex<Captures>>,
    pub(crate) notify: Notify,
    /// Lines to send once the lock is let go (`sending.rs`).
    unlocked: Vec<Unlocked>,
    /// Finishes exits off the lock (`reaper.rs`).
    pub(crate) reaper: Arc<Reaper>,
    /// Workers whose exit was handed to the reaper and not yet told to the core.
    exiting: HashSet<Key>,
    /// Runs the workers' probes on its own thread (`probes/`).
    pub(crate) prober: Arc<Prober>,
}

/// What `Io` acts through, all made before it.
pub struct IoParts {
    pub tokens: Arc<Tokens>,
    pub spawner: Arc<Spawner>,
    pub reaper: Arc<Reaper>,
    pub lifeline: Arc<Lifeline>,
    pub listeners: Arc<Listeners>,
    /// Whether exec probes' exits are seen through pidfds (`Options::use_pidfd`), else polled.
    pub use_pidfd: bool,
}

impl Io {
    pub fn new(parts: IoParts) -> std::io::Result<Io> {
        let IoParts {
            tokens,
            spawner,
            reaper,
            lifeline,
            listeners,
            use_pidfd,
        } = parts;
        let prober = Prober::new(Arc::clone(&lifeline), use_pidfd)?;
        Ok(Io {
            procs: HashMap::new(),
            polled: BTreeSet::new(),
            spawner,
            out: EventsOut::new()?,
            kill_errors: HashMap::new(),
            lifeline,
            listeners,
            captures: Arc::new(Mutex::new(Captures::new(Arc::clone(&tokens)))),
            notify: Notify::new(Arc::clone(&tokens)),
            tokens,
            unlocked: Vec::new(),
            reaper,
            exiting: HashSet::new(),
            prober,
        })
    }

    pub fn polled(&self) -> Vec<Key> {
        self.polled.iter().copied().collect()
    }

    pub fn has_polled(&self) -> bool {
        !self.polled.is_empty()
    }

    pub fn has_pidfd(&self, key: Key) -> bool {
        self.procs.get(&key).is_some_and(|p| p.pidfd.is_some())
    }

    /// Whether the worker's exit was seen and is being finished by the reaper.
    pub fn is_exiting(&self, key: Key) -> bool {
        self.exiting.contains(&key)
    }

    /// The reaper has told the core of the worker's exit.
    pub fn exit_told(&mut self, key: Key) {
        self.exiting.remove(&key);
    }

    /// Takes over the descriptors of a child the core adopted as worker `key`. A descriptor the
    /// epoll set refuses is dropped: exits are then polled, and a worker without its channel
    /// stops by signal.
    pub fn register(&mut self, key: Key, mut child: Child) {
        let pid = child.pid;
        let output = child.output.take();
        let (pidfd, control) = child.adopt();
        // Once: it becomes readable when the worker exited, and stays so.
        let pidfd = pidfd.and_then(|fd| {
            let token = self
                .tokens
                .watch_once(fd.as_fd(), Source::Pidfd(key))
                .ok()?;
            Some((fd, token))
        });
        let channel = control.and_then(|fd| {
            let token = self.tokens.watch(fd.as_fd(), Source::Control(key)).ok()?;
            Some(Channel {
                fd: Arc::new(fd),
                token,
                reader: LineReader::default(),
                outbox: Vec::new(),
                watching_room: false,
                sending: false,
            })
        });
        if pidfd.is_none() {
            self.polled.insert(key);
        }
        self.procs.insert(
            key,
            Proc {
                pid,
                pidfd,
                channel,
            },
        );
        if let Some(captured) = output {
            lock(&self.captures).watch(key, pid, captured);
        }
    }

    /// Every process's pid and the numbers of its pidfd and control socket (`handover`); Err
    /// while an exit is being finished or a line is on its way.
    pub fn export_procs(&self) -> Result<Vec<ProcFds>, String> {
        if !self.exiting.is_empty() {
            return Err("an exit is being finished".into());
        }
        let mut out = Vec::with_capacity(self.procs.len());
        for (&key, p) in &self.procs {
            let channel = p.channel.as_ref();
            if channel.is_some_and(|c| c.sending || !c.outbox.is_empty()) {
                return Err(format!("a line to worker process {} is on its way", p.pid));
            }
            out.push(ProcFds {
                key,
                pid: p.pid,
                pidfd: p.pidfd.as_ref().map(|(fd, _)| fd.as_raw_fd()),
                control: channel.map(|c| c.fd.as_raw_fd()),
            });
        }
        Ok(out)
    }

    /// Carries out effects; spawn jobs go to the spawner together.
    /// Returns the resident sets read (`Effect::SampleRss`), for the core.
    pub fn apply(&mut self, effects: Vec<Effect>) -> Vec<(Key, Option<u64>)> {
        let mut jobs = Vec::new();
        let mut samples = Vec::new();
        for effect in effects {
            match effect {
                Effect::Spawn(job) => jobs.push(job),
                Effect::Signal { key, signal } => self.signal(key, signal, true),
                Effect::SignalAs { key, signal, group } => self.signal(key, signal, group),
                Effect::Send { key, line } => {
                    self.send(key, &line, None);
                }
                Effect::SampleRss { key } => samples.push((key, self.rss_of(key))),
                Effect::Probe(job) => self.prober.submit(job),
                Effect::Stop {
                    key,
                    drain,
                    signal,
                    group,
                } => {
                    let line = if drain {
                        to_worker::STOP_DRAIN
                    } else {
                        to_worker::STOP_NOW
                    };
                    if !self.send(key, line, Some((signal, group))) {
                        self.signal(key, signal, group);
                    }
                }
            }
        }
        let carried = self
            .listeners
            .carried(jobs.iter().map(|j| j.plan.spec.name.as_str()));
        self.spawner.submit(jobs, Reply::Monitor, carried);
        samples
    }

    /// The resident set of worker `key`'s process, from `/proc/<pid>/statm`: only while its
    /// exit has not been seen, so the pid is still its own (unreaped).
    fn rss_of(&self, key: Key) -> Option<u64> {
        let p = self.procs.get(&key)?;
        crate::os::notify::resident_bytes(p.pid)
    }

    /// Signals the worker's whole process group (`group`), and the worker itself in case it
    /// left the group, or only the worker; only before its exit has been seen. Through the
    /// pidfd when there is one, so that even a worker the kernel reaped early (a host ignoring
    /// SIGCHLD) cannot have its pid reused under us.
    fn signal(&mut self, key: Key, sig: i32, group: bool) {
        let Some(p) = self.procs.get(&key) else {
            return;
        };
        let result = match (&p.pidfd, group) {
            (Some((fd, _)), false) => os::pidfd_signal(fd, sig).map(drop),
            // Signal 0 through the pidfd proves the process still exists (as a zombie, at
            // worst), so its pid and group id are still its own.
            (Some((fd, _)), true) => match os::pidfd_signal(fd, 0) {
                Ok(true) => os::signal_worker(p.pid, sig),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            },
            (None, false) => os::kill_pid(p.pid, sig),
            (None, true) => os::signal_worker(p.pid, sig),
        };
        let kill = sig == Signal::SIGKILL as i32;
        if kill {
            self.lifeline.kill_tree(p.pid);
        }
        if let Err(e) = result {
            if kill {
                let refused = e.raw_os_error() == Some(Errno::EPERM as i32);
                let error = format!("SIGKILL to pid {}: {e}", p.pid);
                self.kill_errors.insert(key, (error, refused));
            }
        }
    }

    /// Sends `line` (plus `\n`) to the worker: once the lock is let go when nothing is queued
    /// for it (`sending.rs`), else behind what is. The rest of a line its socket does not take
    /// at once goes when the monitor sees room. False when there is no usable channel; a line
    /// with a `fallback` that turns out unable to go has that signal sent instead.
    fn send(&mut self, key: Key, line: &[u8], fallback: Option<(i32, bool)>) -> bool {
        let Some(ch) = self.procs.get_mut(&key).and_then(|p| p.channel.as_mut()) else {
            return false;
        };
        if ch.outbox.is_empty() && !ch.sending {
            ch.sending = true;
            let mut bytes = Vec::with_capacity(line.len() + 1);
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
            self.unlocked.push(Unlocked {
                key,
                fd: Arc::clone(&ch.fd),
                bytes,
                fallback,
            });
            return true;
        }
        ch.outbox.extend_from_slice(line);
        ch.outbox.push(b'\n');
        self.flush(key)
    }

    /// The lines to send once the lock is let go.
    pub fn take_unlocked(&mut self) -> Vec<Unlocked> {
        std::mem::take(&mut self.unlocked)
    }

    /// Takes note of how the lines sent without the lock went: what a socket did not take
    /// goes back to the front of its queue, and a stop request that could not go becomes its
    /// signal. Returns the lines' sockets, to be let go of once the lock is: often the last
    /// hold of one whose worker exited meanwhile, and closing a socket is not free.
    pub fn after_unlocked(&mut self, outcomes: Vec<sending::Outcome>) -> Vec<Arc<OwnedFd>> {
        let mut sockets = Vec::with_capacity(outcomes.len());
        for (line, result) in outcomes {
            let Unlocked {
                key,
                fd,
                bytes,
                fallback,
            } = line;
            sockets.push(fd);
            let ch = self.procs.get_mut(&key).and_then(|p| p.channel.as_mut());
            let delivered = match (ch, result) {
                (Some(ch), Ok(n)) => {
                    ch.sending = false;
                    ch.outbox.splice(0..0, bytes[n..].iter().copied());
                    self.flush(key)
                }
                (Some(_), Err(_)) => {
                    self.close_channel(key);
                    false
                }
                // Closed meanwhile (its worker exited, or a protocol error).
                (None, result) => result.is_ok_and(|n| n == bytes.len()),
            };
            if let (false, Some((signal, group))) = (delivered, fallback) {
                self.signal(key, signal, group);
            }
        }
        sockets
    }

    /// Sends queued bytes; watches for room to write while some remain. False when the peer
    /// is gone (the channel is then closed).
    pub fn flush(&mut self, key: Key) -> bool {
        let Some(ch) = self.procs.get_mut(&key).and_then(|p| p.channel.as_mut()) else {
            return false;
        };
        if ch.sending {
            // `after_unlocked` flushes, behind the line that is out.
            return true;
        }
        while !ch.outbox.is_empty() {
            match os::send_some(&ch.fd, &ch.outbox) {
                Ok(0) => break,
                Ok(n) => {
                    ch.outbox.drain(..n);
                }
                Err(_) => {
                    self.close_channel(key);
                    return false;
                }
            }
        }
        // Only when that changes: a line that goes at once (nearly all) costs no epoll_ctl.
        let wanted = !ch.outbox.is_empty();
        if wanted != ch.watching_room
            && self
                .tokens
                .want_room(ch.fd.as_fd(), ch.token, wanted)
                .is_ok()
        {
            ch.watching_room = wanted;
        }
        true
    }

    /// Reads what the worker's control socket holds now (a bounded amount: level-triggered
    /// epoll brings the monitor back for the rest).
    pub fn read_channel(&mut self, key: Key) -> ChannelRead {
        let mut out = ChannelRead::default();
        let Some(ch) = self.procs.get_mut(&key).and_then(|p| p.channel.as_mut()) else {
            return out;
        };
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..4 {
            match os::read_some(&ch.fd, &mut buf) {
                ReadResult::Data(n) => {
                    if ch.reader.feed(&buf[..n], &mut out.lines).is_err() {
                        out.error = Some(format!("line longer than {MAX_LINE} bytes"));
                        break;
                    }
                    // A short read took all there was: no read just to hear EAGAIN (if more
                    // came meanwhile, the level-triggered epoll set says so).
                    if n < buf.len() {
                        break;
                    }
                }
                ReadResult::WouldBlock => break,
                ReadResult::Closed => {
                    out.closed = true;
                    break;
                }
            }
        }
        out
    }

    /// Closes the supervisor's end of a worker's control socket (on the reaper's thread).
    pub fn close_channel(&mut self, key: Key) {
        if let Some(ch) = self.procs.get_mut(&key).and_then(|p| p.channel.take()) {
            self.tokens.unwatch(ch.fd.as_fd(), ch.token);
            self.reaper.close_later(vec![ch.fd]);
        }
    }

    /// Hands the worker to the reaper if it has exited (`reaper.rs`), its whole process group
    /// killed first (`look_at_exit`), and lets go of its descriptors. False while it runs.
    pub fn check_exit(&mut self, key: Key) -> bool {
        let Some(p) = self.procs.get(&key) else {
            return false;
        };
        let state = reaper::look_at_exit(p.pid);
        if state == ChildState::Running {
            return false;
        }
        self.hand_over(key, Some(state));
        true
    }

    /// The worker's pidfd said it exited: the reaper looks at it and finishes the exit.
    pub fn exited_by_pidfd(&mut self, key: Key) {
        self.hand_over(key, None);
    }

    fn hand_over(&mut self, key: Key, seen: Option<ChildState>) {
        let Some(p) = self.procs.get(&key) else {
            return;
        };
        let (pid, keeper_has_pidfd) = (p.pid, p.pidfd.is_some());
        let descriptors = self.forget(key);
        self.exiting.insert(key);
        self.reaper.hand(Exit {
            key,
            pid,
            seen,
            keeper_has_pidfd,
            descriptors,
        });
    }

    /// The pids of every process still tracked.
    pub fn pids(&self) -> Vec<(Key, i32)> {
        self.procs.iter().map(|(&k, p)| (k, p.pid)).collect()
    }

    /// Forgets a process without reaping it (it could not be killed in time): the orphanage
    /// reaps it later.
    pub fn abandon(&mut self, key: Key) {
        if let Some(p) = self.procs.get(&key) {
            crate::runtime::child::orphan(p.pid);
        }
        lock(&self.captures).release(key);
        drop(self.forget(key));
    }

    /// Stops tracking the worker's process; returns its descriptors, out of the epoll set.
    fn forget(&mut self, key: Key) -> Vec<Arc<OwnedFd>> {
        self.polled.remove(&key);
        self.kill_errors.remove(&key);
        let mut descriptors = Vec::new();
        if let Some(p) = self.procs.remove(&key) {
            self.notify.untrack(key, p.pid);
            // A pidfd is watched once (`register`), so closing it is enough.
            if let Some((fd, token)) = p.pidfd {
                self.tokens.forget(token);
                descriptors.push(Arc::new(fd));
            }
            if let Some(ch) = p.channel {
                self.tokens.unwatch(ch.fd.as_fd(), ch.token);
                descriptors.push(ch.fd);
            }
        }
        descriptors
    }
}
