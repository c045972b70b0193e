//! The spawner: threads the library owns that run every spawn and respawn, never under the state
//! lock. Threads start as work arrives, up to one per core, so a big start spawns on every core.
//! The jobs of one submission share their spawn attributes, made once by whichever thread needs
//! them first.
//!
//! # A descriptor table of their own
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

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::clock;
use crate::config::{self, ControlChannelMode};
use crate::core::effects::SpawnJob;
use crate::core::worker::Key;
use crate::os::passing;
use crate::os::spawn::{self, Command, SpawnAttributes, FIRST_INHERITED};
use crate::os::{self, Flag, Poller};
use crate::runtime::child::Child;
use crate::runtime::io::SPAWNED_TOKEN;
use crate::runtime::lifeline::Lifeline;
use crate::runtime::listen::{ListenInfo, Listeners};
use crate::runtime::output::{Captured, Sink, Stream};
use crate::sync::lock;
use crate::threads;

/// The most jobs one spawner thread takes at once.
const BURST: usize = 32;
/// The stack of a spawner thread.
const STACK: usize = 256 * 1024;

/// What became of one job.
#[derive(Debug)]
pub struct SpawnOutcome {
    pub key: Key,
    pub result: Result<Child, std::io::Error>,
}

/// Where a job's outcome goes.
#[derive(Debug, Clone)]
pub enum Reply {
    /// To the monitor, which adopts it (respawns, scale-ups, rollouts).
    Monitor,
    /// To a host call that waits for its whole batch (`start_groups`).
    Batch(Sender<SpawnOutcome>),
}

/// Outcomes for the monitor, and the flag that wakes it.
#[derive(Debug)]
pub struct ToMonitor {
    pub outcomes: Mutex<Vec<SpawnOutcome>>,
    pub wake: Flag,
}

/// Called with the pid of every process just spawned, before it is handed over: lets a test
/// inject a panic between a spawn and its adoption.
pub type SpawnHook = fn(i32);

/// Descriptors of the host's table that a submission carries to its spawns, by group name: every
/// spawn of that group inherits them, in order, as its descriptors 3, 4, ... (the control socket
/// comes after them). The submission owns them; in a private table they travel in one message
/// and the host's copies are closed at once.
pub type Carried = Vec<(String, Vec<OwnedFd>)>;

type Failure = (std::io::ErrorKind, String);

fn failure(e: &std::io::Error) -> Failure {
    (e.kind(), e.to_string())
}

fn error(f: &Failure) -> std::io::Error {
    std::io::Error::new(f.0, f.1.clone())
}

/// What the jobs of one submission share.
struct Batch {
    reply: Reply,
    attrs: OnceLock<Result<SpawnAttributes, Failure>>,
    given: Given,
    /// Jobs not finished: the last one to finish closes what arrived for them.
    left: AtomicUsize,
}

/// The descriptors a submission gives its spawns.
enum Given {
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
struct Arrived {
    stdio: [Option<usize>; 3],
    groups: Vec<(String, std::ops::Range<usize>)>,
    /// Numbers of the private table: closed only there (by the submission's last job), never by a
    /// drop, which may run on a thread of the host's table, where they name other descriptors.
    fds: Vec<OwnedFd>,
}

impl Drop for Arrived {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            let _ = fd.into_raw_fd();
        }
    }
}

/// The descriptors one spawn gets from its submission.
struct View<'a> {
    stdio: Option<[Option<&'a OwnedFd>; 3]>,
    carried: &'a [OwnedFd],
}

impl Batch {
    fn attrs(&self, private: bool) -> std::io::Result<&SpawnAttributes> {
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
    fn view(&self, private: Option<&Private>, group: &str) -> std::io::Result<View<'_>> {
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
    fn finished(&self) {
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
struct Private {
    inbox: RawFd,
    outbox: RawFd,
    /// Submissions' descriptors received while looking for another's, by message id (numbers of
    /// the private table, closed with it if never claimed).
    early: Mutex<HashMap<u64, Vec<RawFd>>>,
}

impl Private {
    /// Receives submission `id`'s descriptors. Its message was sent before its jobs were queued,
    /// so it is there, possibly behind others'.
    fn claim(&self, id: u64, stdio: u8, groups: &[(String, usize)]) -> Result<Arrived, Failure> {
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
/// arrive (watched by the monitor's epoll set under `SPAWNED_TOKEN`).
struct Link {
    to_private: OwnedFd,
    from_private: Arc<OwnedFd>,
}

/// What travelled in an outcome's message, in this order.
#[derive(Default)]
struct Sent {
    pidfd: bool,
    control: bool,
    output: Option<(Captured, Vec<(Stream, Sink)>)>,
}

/// An outcome on its way to the host's table, without its descriptors.
struct Pending {
    key: Key,
    reply: Reply,
    result: Result<Child, std::io::Error>,
    sent: Sent,
}

struct Queue {
    jobs: VecDeque<(SpawnJob, Arc<Batch>)>,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    monitor: Arc<ToMonitor>,
    use_pidfd: bool,
    hook: Option<SpawnHook>,
    lifeline: Option<Arc<Lifeline>>,
    listeners: Option<Arc<Listeners>>,
    max_threads: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set by the first spawner thread before it runs a job: Some when the spawner threads have a
    /// table of their own.
    private: OnceLock<Option<Private>>,
    /// Outcomes whose message is on its way to the monitor (`collect`), by message id.
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
}

impl Shared {
    fn private(&self) -> Option<&Private> {
        self.private.get().and_then(Option::as_ref)
    }
}

struct HostSide {
    started: bool,
    link: Option<Link>,
}

pub struct Spawner {
    shared: Arc<Shared>,
    host: Mutex<HostSide>,
    private_table: bool,
    /// The monitor's epoll set, which watches `from_private`.
    poller: Arc<Poller>,
    /// Where outcomes arrive from the private table (a copy of the link's), for `collect`.
    arrivals: Mutex<Option<Arc<OwnedFd>>>,
}

impl Spawner {
    /// `threads`: at most this many spawner threads (None: one per core, up to 8).
    /// `private_table`: run them in a descriptor table of their own where the system allows; their
    /// outcomes then arrive on a socket in `poller` (the monitor's), under `SPAWNED_TOKEN`, and
    /// the monitor calls `collect`.
    pub fn new(
        monitor: Arc<ToMonitor>,
        use_pidfd: bool,
        hook: Option<SpawnHook>,
        threads: Option<usize>,
        private_table: bool,
        poller: Arc<Poller>,
    ) -> Spawner {
        let cores =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Spawner {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    shutdown: false,
                }),
                work: Condvar::new(),
                monitor,
                use_pidfd,
                hook,
                lifeline: None,
                listeners: None,
                max_threads: cores.clamp(1, 8),
                threads: Mutex::new(Vec::new()),
                private: OnceLock::new(),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
            host: Mutex::new(HostSide {
                started: false,
                link: None,
            }),
            private_table,
            poller,
            arrivals: Mutex::new(None),
        }
    }

    /// Every spawned process goes to `lifeline` (its cgroup, the keeper) before it is handed
    /// over. Only before the first submission.
    pub fn set_lifeline(&mut self, lifeline: Arc<Lifeline>) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.lifeline = Some(lifeline);
        }
    }

    /// The groups' listen sockets, passed to their workers. Only before the first submission.
    pub fn set_listeners(&mut self, listeners: Arc<Listeners>) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.listeners = Some(listeners);
        }
    }

    /// How many spawner threads may run at once.
    pub fn parallelism(&self) -> usize {
        self.shared.max_threads
    }

    /// Queues jobs, with the descriptors they carry; their outcomes go to `reply`. Called on a
    /// thread of the host's descriptor table. A job that cannot be queued (after shutdown, when
    /// no thread can be started, when its descriptors cannot be passed) gets a failed outcome at
    /// once.
    pub fn submit(&self, jobs: Vec<SpawnJob>, reply: Reply, carried: Carried) {
        if jobs.is_empty() {
            return;
        }
        let fail = |jobs: Vec<SpawnJob>, e: &std::io::Error| {
            for job in jobs {
                deliver(&self.shared, &reply, job.key, Err(error(&failure(e))));
            }
        };
        let mut host = lock(&self.host);
        if lock(&self.shared.queue).shutdown {
            return fail(jobs, &shutting_down());
        }
        if !host.started {
            if let Err(e) = self.start(&mut host) {
                let e = std::io::Error::new(e.kind(), format!("starting a spawner thread: {e}"));
                return fail(jobs, &e);
            }
            host.started = true;
        }
        let given = match &host.link {
            None => Given::Here(carried),
            Some(link) => match self.ship(link, &carried) {
                Ok(given) => given,
                Err(e) => return fail(jobs, &e),
            },
        };
        let batch = Arc::new(Batch {
            reply: reply.clone(),
            attrs: OnceLock::new(),
            given,
            left: AtomicUsize::new(jobs.len()),
        });
        {
            let mut q = lock(&self.shared.queue);
            if q.shutdown {
                drop(q);
                return fail(jobs, &shutting_down());
            }
            q.jobs
                .extend(jobs.into_iter().map(|j| (j, Arc::clone(&batch))));
        }
        self.shared.work.notify_all();
    }

    /// Starts the first spawner thread, which gives itself a private table when it can (and the
    /// socket for its outcomes first).
    fn start(&self, host: &mut HostSide) -> std::io::Result<()> {
        let link = if self.private_table {
            self.open_link().ok()
        } else {
            None
        };
        let ends = link.as_ref().map(|(_, inbox, outbox)| {
            let keep = self
                .shared
                .lifeline
                .as_ref()
                .map_or_else(Vec::new, |l| l.spawner_descriptors());
            (inbox.as_raw_fd(), outbox.as_raw_fd(), keep)
        });
        let (answer, answered) = mpsc::sync_channel::<()>(1);
        let shared = Arc::clone(&self.shared);
        let started = {
            let mut threads = lock(&self.shared.threads);
            threads::spawn_named("mpsup-spawner", Some(STACK), move || {
                let private = ends.and_then(|(inbox, outbox, keep)| enter(inbox, outbox, &keep));
                let _ = shared.private.set(private);
                drop(answer);
                run(&shared);
            })
            .map(|handle| threads.push(handle))
        };
        if let Err(e) = started {
            if let Some((link, _, _)) = link {
                self.close_link(link);
            }
            return Err(e);
        }
        // Disconnected once the thread has decided.
        let _ = answered.recv();
        if let Some((link, inbox, outbox)) = link {
            // The host's copies of the spawner threads' ends go.
            drop(inbox);
            drop(outbox);
            if self.shared.private().is_some() {
                *lock(&self.arrivals) = Some(Arc::clone(&link.from_private));
                host.link = Some(link);
            } else {
                self.close_link(link);
            }
        }
        Ok(())
    }

    fn close_link(&self, link: Link) {
        self.poller.remove(link.from_private.as_fd());
    }

    /// The two socket pairs, the arrivals watched by the monitor: the link, and the spawner
    /// threads' two ends (the inbox's receiving end, the outbox's sending end), still in the
    /// host's table.
    fn open_link(&self) -> std::io::Result<(Link, OwnedFd, OwnedFd)> {
        let (to_private, inbox) = passing::message_pair()?;
        let (outbox, from_private) = passing::message_pair()?;
        os::set_nonblocking(&from_private)?;
        self.poller.add(from_private.as_fd(), SPAWNED_TOKEN)?;
        let link = Link {
            to_private,
            from_private: Arc::new(from_private),
        };
        Ok((link, inbox, outbox))
    }

    /// On a thread of the host's table (the monitor, when the arrivals are readable): hands over
    /// every outcome that has arrived from the private table, with its descriptors put back.
    /// `wake`: wake the monitor for those it gets (false: the monitor itself calls).
    pub fn collect(&self, wake: bool) {
        let arrivals = lock(&self.arrivals);
        let Some(sock) = arrivals.as_ref() else {
            return;
        };
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
                self.poller.remove(sock.as_fd());
                break;
            }
            if n != 8 {
                continue;
            }
            let id = u64::from_ne_bytes(buf);
            let Some(p) = lock(&self.shared.pending).remove(&id) else {
                continue;
            };
            let result = p.result.and_then(|child| restore(child, p.sent, fds));
            match &p.reply {
                Reply::Monitor => {
                    lock(&self.shared.monitor.outcomes).push(SpawnOutcome { key: p.key, result });
                    any = true;
                }
                Reply::Batch(tx) => drop(tx.send(SpawnOutcome { key: p.key, result })),
            }
        }
        if any && wake {
            self.shared.monitor.wake.set();
        }
    }

    /// Sends the host's 0, 1, 2 (those open now) and the carried descriptors to the private
    /// table, as one message.
    fn ship(&self, link: &Link, carried: &Carried) -> std::io::Result<Given> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
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

    /// Stops the threads once they have finished the jobs they hold; jobs still queued are
    /// failed; the outcomes still on their way are handed over.
    pub fn shutdown(&self) {
        let left: Vec<_> = {
            let mut q = lock(&self.shared.queue);
            q.shutdown = true;
            q.jobs.drain(..).collect()
        };
        self.shared.work.notify_all();
        for (job, batch) in left {
            deliver(&self.shared, &batch.reply, job.key, Err(shutting_down()));
        }
        // A thread may start another until it sees the shutdown.
        loop {
            let handles: Vec<_> = lock(&self.shared.threads).drain(..).collect();
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
        // Every outcome has been sent: hand over what the monitor has not collected yet.
        self.collect(true);
        if let Some(link) = lock(&self.host).link.take() {
            self.close_link(link);
        }
        lock(&self.arrivals).take();
    }
}

fn shutting_down() -> std::io::Error {
    std::io::Error::other("the supervisor is shutting down")
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// On the first spawner thread: gives it a table of its own that holds only `inbox`, `outbox`,
/// `keep` and `/dev/null` on 0, 1 and 2. None (and the table stays the host's) where that
/// cannot be had.
fn enter(inbox: RawFd, outbox: RawFd, keep: &[RawFd]) -> Option<Private> {
    // Checked first: without a listing the copy could not be emptied.
    passing::thread_descriptors().ok()?;
    passing::unshare_descriptor_table().ok()?;
    // From here on the table is private, whatever fails.
    let private = Private {
        inbox,
        outbox,
        early: Mutex::new(HashMap::new()),
    };
    if let Ok(open) = passing::thread_descriptors() {
        for fd in open {
            if fd > 2 && fd != inbox && fd != outbox && !keep.contains(&fd) {
                passing::close_number(fd);
            }
        }
    }
    if !passing::null_stdio() {
        // Without /dev/null the copies of the host's 0, 1 and 2 stay (every spawn replaces or
        // closes them in the child all the same).
    }
    Some(private)
}

/// Starts one more spawner thread, from a spawner thread (so that it shares its table), while
/// jobs wait that no idle thread will take.
fn grow(shared: &Arc<Shared>) {
    let mut threads = lock(&shared.threads);
    {
        let q = lock(&shared.queue);
        if q.shutdown || q.jobs.is_empty() || q.idle > 0 || threads.len() >= shared.max_threads {
            return;
        }
    }
    let for_thread = Arc::clone(shared);
    if let Ok(handle) = threads::spawn_named("mpsup-spawner", Some(STACK), move || run(&for_thread))
    {
        threads.push(handle);
    }
}

fn run(shared: &Arc<Shared>) {
    loop {
        let burst: Vec<(SpawnJob, Arc<Batch>)> = {
            let mut q = lock(&shared.queue);
            while q.jobs.is_empty() && !q.shutdown {
                q.idle += 1;
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
            if q.jobs.is_empty() {
                return;
            }
            let n = q.jobs.len().min(BURST);
            q.jobs.drain(..n).collect()
        };
        grow(shared);
        let private = shared.private();
        for (job, batch) in burst {
            let key = job.key;
            let result = batch.attrs(private.is_some()).and_then(|attrs| {
                let given = batch.view(private, &job.plan.spec.name)?;
                catch_unwind(AssertUnwindSafe(|| spawn_one(shared, &job, attrs, &given)))
                    .unwrap_or_else(|_| Err(std::io::Error::other("a panic in the spawner")))
            });
            batch.finished();
            hand_over(shared, &batch.reply, key, result);
        }
    }
}

/// On a spawner thread: passes an outcome on, through the arrivals socket when the spawner
/// threads have a table of their own (its descriptors must reach the host's table, and the
/// monitor's wake flag is a number of that table; the monitor's epoll set sees the socket).
fn hand_over(shared: &Shared, reply: &Reply, key: Key, result: Result<Child, std::io::Error>) {
    let Some(private) = shared.private() else {
        return deliver(shared, reply, key, result);
    };
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
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let pending = Pending {
        key,
        reply: reply.clone(),
        result,
        sent,
    };
    lock(&shared.pending).insert(id, pending);
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let Err(e) = passing::send(private.outbox, &id.to_ne_bytes(), &raw, true) else {
        return;
    };
    // It cannot travel with its descriptors: the child is killed (dropped here), the failure
    // travels alone.
    let Some(p) = lock(&shared.pending).remove(&id) else {
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
    lock(&shared.pending).insert(id, failed);
    if passing::send(private.outbox, &id.to_ne_bytes(), &[], true).is_err() {
        // Not even that: handed over without waking the monitor (its flag is not in this
        // table); it finds the outcome on its next round.
        if let Some(p) = lock(&shared.pending).remove(&id) {
            let outcome = SpawnOutcome {
                key,
                result: p.result,
            };
            match &p.reply {
                Reply::Monitor => lock(&shared.monitor.outcomes).push(outcome),
                Reply::Batch(tx) => drop(tx.send(outcome)),
            }
        }
    }
}

/// Gives a child back the descriptors that arrived for it, in the order `hand_over` sent them.
fn restore(mut child: Child, sent: Sent, fds: Vec<OwnedFd>) -> std::io::Result<Child> {
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

/// Passes an outcome on, from a thread of the host's table.
fn deliver(shared: &Shared, reply: &Reply, key: Key, result: Result<Child, std::io::Error>) {
    let outcome = SpawnOutcome { key, result };
    match reply {
        Reply::Monitor => {
            lock(&shared.monitor.outcomes).push(outcome);
            shared.monitor.wake.set();
        }
        // A caller that stopped waiting drops the outcome, and with it the child (killed).
        Reply::Batch(tx) => drop(tx.send(outcome)),
    }
}

/// What a worker of `spec` needs to know of its group's listen sockets (None when it has none).
fn listen_info(
    shared: &Shared,
    spec: &config::GroupSpec,
) -> std::io::Result<Option<Arc<ListenInfo>>> {
    if spec.listen.is_empty() {
        return Ok(None);
    }
    shared
        .listeners
        .as_ref()
        .and_then(|l| l.info(&spec.name))
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "the listen sockets of group '{}' are closed",
                spec.name
            ))
        })
}

/// Spawns one worker process: its listen sockets (carried by the submission, or with
/// `reuse_port` its own) and control socket, its own environment variables, the spawn.
/// Descriptors 3, 4, ... are the listen sockets, then the control socket, then the exec shim's
/// report descriptor.
fn spawn_one(
    shared: &Shared,
    job: &SpawnJob,
    attrs: &SpawnAttributes,
    given: &View<'_>,
) -> std::io::Result<Child> {
    let spec = &job.plan.spec;
    let listen = listen_info(shared, spec)?;
    let own_sockets = match &listen {
        Some(l) => l.own_sockets()?,
        None => Vec::new(),
    };
    let listen_fds: Vec<&OwnedFd> = given.carried.iter().chain(own_sockets.iter()).collect();
    let listening = listen.as_ref().map_or(0, |l| l.count);
    if listen_fds.len() != listening {
        return Err(std::io::Error::other(format!(
            "{} of the {listening} listen sockets of group '{}' reached the spawner",
            listen_fds.len(),
            spec.name
        )));
    }
    let listen_pid = listening > 0;
    let extra = shared
        .lifeline
        .as_ref()
        .map_or(0, |l| l.extra_inherited(listen_pid)) as i32;
    // The highest descriptor number the spawn assigns.
    let last_target = FIRST_INHERITED + listening as i32 + extra;
    let control_fd = FIRST_INHERITED + listening as i32;
    let (ours, theirs, channel_error) = match spec.control_channel {
        ControlChannelMode::Off => (None, None, None),
        ControlChannelMode::Auto => match os::control_socketpair(last_target) {
            Ok((ours, theirs)) => (Some(ours), Some(theirs), None),
            Err(e) => (None, None, Some(e.to_string())),
        },
    };
    let mut envp: Vec<CString> = Vec::with_capacity(job.plan.env.len() + 8);
    envp.extend(job.plan.env.iter().cloned());
    envp.push(config::cstring(&format!("MPSUP_GROUP={}", spec.name)));
    envp.push(config::cstring(&format!("MPSUP_WORKER_ID={}", job.id)));
    if let Some(l) = &listen {
        // systemd's socket activation; the exec shim adds LISTEN_PID, the worker's own pid.
        envp.push(config::cstring(&format!("LISTEN_FDS={listening}")));
        envp.push(config::cstring(&format!("LISTEN_FDNAMES={}", l.names)));
        envp.push(config::cstring("MPSUP_EXEC_LISTEN_PID=1"));
    }
    if theirs.is_some() {
        envp.push(config::cstring(&format!("MPSUP_CONTROL_FD={control_fd}")));
        if spec.bootstrap.is_some() {
            envp.push(config::cstring("MPSUP_BOOTSTRAP=1"));
        }
        if spec.start_gate {
            envp.push(config::cstring("MPSUP_START_GATE=1"));
        }
    }
    let (captured, writes) = crate::runtime::output::pipes(spec, &job.id)?;
    let mut inherit: Vec<&OwnedFd> = listen_fds.iter().copied().chain(theirs.iter()).collect();
    let placement = match &shared.lifeline {
        Some(l) => l.prepare(
            &spec.name,
            &job.plan.program,
            &job.plan.argv,
            inherit.len(),
            listen_pid,
        )?,
        None if listen_pid => {
            return Err(std::io::Error::other("listen sockets need the exec shim"))
        }
        None => None,
    };
    let (program, argv) = match &placement {
        Some(p) => {
            inherit.extend(p.report.as_ref());
            (p.program.as_c_str(), &p.argv[..])
        }
        None => (job.plan.program.as_c_str(), &job.plan.argv[..]),
    };
    let cmd = Command {
        program,
        argv,
        envp: &envp,
        cwd: job.plan.cwd.as_deref(),
        stdout: &spec.stdout,
        stderr: &spec.stderr,
        stdout_pipe: writes[0].as_ref(),
        stderr_pipe: writes[1].as_ref(),
        stdio: given.stdio,
        inherit: &inherit,
    };
    let pid = spawn::spawn(&cmd, attrs)?;
    // From here on the child is owned: whatever happens, it is killed and reaped or adopted.
    let mut child = Child::new(pid, Instant::now(), clock::now_ms());
    drop(theirs);
    drop(listen_fds);
    drop(own_sockets);
    drop(writes);
    child.output = captured;
    child.control = ours;
    child.channel_error = channel_error;
    if shared.use_pidfd {
        child.pidfd = os::pidfd_open(pid).ok();
    }
    if let Some(lifeline) = &shared.lifeline {
        lifeline.spawned(placement, pid, child.pidfd.as_ref())?;
        // The worker's own program runs from now on (after the exec shim's).
        child.spawned_at = Instant::now();
        child.spawned_at_ms = clock::now_ms();
    }
    if let Some(hook) = shared.hook {
        hook(pid);
    }
    Ok(child)
}
