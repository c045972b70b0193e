//! The probe thread (API.md part 8): one thread of the library's, started at the first probe,
//! runs every worker's probes, never a thread per worker. TCP and HTTP probes are non-blocking
//! sockets in its own epoll set (`net.rs`), exec probes processes whose pidfds are in the same
//! set (`exec.rs`). It owns its schedule (each probe every `period_ms` from the start of its
//! last run), and reports the results of a round under one hold of the engine's lock to the
//! core (`core/probes.rs`), which decides and says whether a worker is still to be probed.
//!
//! Descriptors: the epoll set and its wake eventfd (made with the `Io`), the probes' sockets and
//! pidfds (made, used and closed here). Like every library thread it blocks all signals.

mod exec;
mod net;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Target;
use crate::core::plan::Plan;
use crate::core::probes::{ProbeJob, ProbeRun};
use crate::core::worker::Key;
use crate::events::ProbeKind;
use crate::os::spawn::SpawnAttributes;
use crate::os::{Flag, Poller};
use crate::runtime::lifeline::Lifeline;
use crate::sync::lock;
use exec::ExecRun;
use net::{NetRun, Step};

/// The token of the wake eventfd; runs get the ones above it.
const WAKE: u64 = 0;
/// How often exec probes without a pidfd are checked for their exit.
const POLL_TICK: Duration = Duration::from_millis(10);
/// Ready descriptors read per epoll call.
const BATCH: usize = 256;
/// Results wait this long at most to be reported together: one hold of the engine's lock per
/// batch rather than per round, so that a thousand probes a period do not crowd the host's
/// calls out of the lock. Far below the shortest period.
const REPORT_EVERY: Duration = Duration::from_millis(5);

/// What the probe thread reports to (the engine's `Shared`, in `engine.rs`), so that this module
/// does not use the engine.
pub trait Report: Send + Sync {
    /// Tells the core the results of one round, `(worker, probe, result)`, under one hold of
    /// its lock; for each, whether that probe of that worker is still wanted.
    fn probe_results(&self, results: Vec<(Key, ProbeKind, Result<(), String>)>) -> Vec<bool>;
}

/// The probe thread's handle: what the engine hands it, and how it is stopped.
pub struct Prober {
    inbox: Mutex<Vec<ProbeJob>>,
    wake: Flag,
    poller: Poller,
    shutdown: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The engine, told of results as long as there is one.
    shared: Mutex<Option<Weak<dyn Report>>>,
    /// The keeper: exec probes die with the host, as workers do.
    lifeline: Arc<Lifeline>,
    /// Exec probes' exits are seen through pidfds; false (`Options::use_pidfd`): polled every
    /// `POLL_TICK`, as where the kernel has no pidfds.
    use_pidfd: bool,
}

impl Prober {
    pub fn new(lifeline: Arc<Lifeline>, use_pidfd: bool) -> std::io::Result<Arc<Prober>> {
        let prober = Prober {
            inbox: Mutex::new(Vec::new()),
            wake: Flag::new()?,
            poller: Poller::new()?,
            shutdown: AtomicBool::new(false),
            thread: Mutex::new(None),
            shared: Mutex::new(None),
            lifeline,
            use_pidfd,
        };
        prober.poller.add(prober.wake.fd(), WAKE)?;
        Ok(Arc::new(prober))
    }

    /// Gives the prober the engine it reports to.
    pub fn attach(&self, shared: Weak<dyn Report>) {
        *lock(&self.shared) = Some(shared);
    }

    /// Probes a worker process from now on (starting the thread at the first job). A thread
    /// that cannot be started leaves the job waiting for the next submission's try.
    pub fn submit(self: &Arc<Self>, job: ProbeJob) {
        lock(&self.inbox).push(job);
        let mut thread = lock(&self.thread);
        if thread.is_none() && !self.shutdown.load(Ordering::Acquire) {
            let me = Arc::clone(self);
            *thread =
                crate::threads::spawn_named("mpsup-probes", Some(256 * 1024), move || run(&me))
                    .ok();
        }
        self.wake.set();
    }

    /// Ends the thread for a handover (`supervisor/handover`): as `stop`, but the next
    /// submission starts it again. Jobs not taken yet are dropped: the core submits every
    /// probed worker again once the supervisor resumes (`State::resume_probes`).
    pub fn pause(&self) {
        self.stop();
        lock(&self.inbox).clear();
        self.shutdown.store(false, Ordering::Release);
    }

    /// Ends the thread: its exec probes still running are killed and reaped.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.wake.set();
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// One probe of one worker, as scheduled.
struct Entry {
    plan: Arc<Plan>,
    run: ProbeRun,
    running: bool,
}

enum What {
    Net(NetRun),
    Exec(ExecRun),
}

/// One run in flight.
struct Run {
    key: Key,
    which: ProbeKind,
    started: Instant,
    deadline: Instant,
    what: What,
}

/// The thread's state: the schedule, the runs in flight, the results not yet reported.
#[derive(Default)]
struct Probing {
    entries: HashMap<(Key, ProbeKind), Entry>,
    due: BinaryHeap<Reverse<(Instant, Key, ProbeKind)>>,
    runs: HashMap<u64, Run>,
    next_token: u64,
    results: Vec<(Key, ProbeKind, Instant, Result<(), String>)>,
    /// When results were last reported.
    reported_at: Option<Instant>,
}

fn run(prober: &Prober) {
    let mut p = Probing {
        next_token: WAKE + 1,
        ..Default::default()
    };
    let mut events = Vec::with_capacity(BATCH);
    while !prober.shutdown.load(Ordering::Acquire) {
        for job in std::mem::take(&mut *lock(&prober.inbox)) {
            p.add(job);
        }
        prober
            .poller
            .wait(&mut events, BATCH, p.timeout(Instant::now()));
        for &(token, readable, writable) in &events {
            if token == WAKE {
                prober.wake.clear();
            } else {
                p.ready(prober, token, readable, writable);
            }
        }
        let now = Instant::now();
        p.check_polled(prober);
        p.time_out(prober, now);
        p.start_due(prober, now);
        if p.reported_at.is_none_or(|at| now >= at + REPORT_EVERY) {
            p.report(prober);
        }
    }
    // Dropping the runs closes their sockets and kills and reaps their programs.
    for (_, run) in p.runs.drain() {
        p_forget(prober, &run);
    }
}

/// Takes a run's descriptor out of the epoll set before it is closed.
fn p_forget(prober: &Prober, run: &Run) {
    match &run.what {
        What::Net(n) => prober.poller.remove(n.fd.as_fd()),
        What::Exec(e) => {
            if let Some(fd) = &e.pidfd {
                prober.poller.remove(fd.as_fd());
            }
        }
    }
}

impl Probing {
    fn add(&mut self, job: ProbeJob) {
        for run in job.probes {
            self.due.push(Reverse((run.first_at, job.key, run.which)));
            let entry = Entry {
                plan: Arc::clone(&job.plan),
                run,
                running: false,
            };
            self.entries.insert((job.key, entry.run.which), entry);
        }
    }

    /// How long the thread may wait: until the next run is due or times out.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let due = self.due.peek().map(|Reverse((at, _, _))| *at);
        let deadline = self.runs.values().map(|r| r.deadline).min();
        let polled = self
            .runs
            .values()
            .any(|r| matches!(&r.what, What::Exec(e) if e.pidfd.is_none()))
            .then_some(now + POLL_TICK);
        let report = self
            .reported_at
            .filter(|_| !self.results.is_empty())
            .map(|at| at + REPORT_EVERY);
        let at = [due, deadline, polled, report]
            .into_iter()
            .flatten()
            .min()?;
        Some(at.saturating_duration_since(now))
    }

    fn finish(&mut self, prober: &Prober, token: u64, result: Result<(), String>) {
        if let Some(run) = self.runs.remove(&token) {
            p_forget(prober, &run);
            self.results.push((run.key, run.which, run.started, result));
        }
    }

    /// A run's descriptor is ready.
    fn ready(&mut self, prober: &Prober, token: u64, readable: bool, writable: bool) {
        let Some(run) = self.runs.get_mut(&token) else {
            return;
        };
        let result = match &mut run.what {
            What::Net(n) => match n.step(writable, readable) {
                Step::Wait { write } => {
                    let _ = prober.poller.modify(n.fd.as_fd(), token, write);
                    return;
                }
                Step::Done(result) => result,
            },
            What::Exec(e) => match e.check() {
                Some(result) => result,
                None => return,
            },
        };
        self.finish(prober, token, result);
    }

    /// Exec probes without a pidfd: have they exited?
    fn check_polled(&mut self, prober: &Prober) {
        let ended: Vec<(u64, Result<(), String>)> = self
            .runs
            .iter_mut()
            .filter_map(|(&token, r)| match &mut r.what {
                What::Exec(e) if e.pidfd.is_none() => e.check().map(|result| (token, result)),
                _ => None,
            })
            .collect();
        for (token, result) in ended {
            self.finish(prober, token, result);
        }
    }

    fn time_out(&mut self, prober: &Prober, now: Instant) {
        let late: Vec<(u64, Duration)> = self
            .runs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&t, r)| (t, r.deadline - r.started))
            .collect();
        for (token, after) in late {
            let detail = format!("timed out after {} ms", after.as_millis());
            self.finish(prober, token, Err(detail));
        }
    }

    /// Starts every run that is due (one at a time per probe).
    fn start_due(&mut self, prober: &Prober, now: Instant) {
        let mut attrs: Option<SpawnAttributes> = None;
        while let Some(&Reverse((at, key, which))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let Some(entry) = self.entries.get_mut(&(key, which)) else {
                continue;
            };
            if entry.running {
                continue;
            }
            entry.running = true;
            let token = self.next_token;
            self.next_token += 1;
            let started = Instant::now();
            let what = match &entry.run.target {
                Err(why) => Err(why.clone()),
                Ok(Target::Tcp(address)) => start_net(prober, token, *address, None),
                Ok(Target::Http {
                    address,
                    host,
                    path,
                }) => start_net(prober, token, *address, Some((host, path))),
                Ok(Target::Exec(argv)) => {
                    if attrs.is_none() {
                        attrs = SpawnAttributes::new().ok();
                    }
                    match &attrs {
                        Some(a) => start_exec(prober, token, &entry.plan, argv, a),
                        None => Err("exec: the spawn attributes could not be made".into()),
                    }
                }
            };
            match what {
                Ok(Ok(what)) => {
                    let deadline = started + entry.run.timeout;
                    let run = Run {
                        key,
                        which,
                        started,
                        deadline,
                        what,
                    };
                    self.runs.insert(token, run);
                }
                Ok(Err(result)) => self.results.push((key, which, started, result)),
                Err(why) => self.results.push((key, which, started, Err(why))),
            }
        }
    }

    /// Tells the core the results of this round, under one hold of the engine's lock, and
    /// schedules the next runs of the probes still wanted.
    fn report(&mut self, prober: &Prober) {
        if self.results.is_empty() {
            return;
        }
        self.reported_at = Some(Instant::now());
        let (runs, told): (Vec<_>, Vec<_>) = std::mem::take(&mut self.results)
            .into_iter()
            .map(|(key, which, started, result)| ((key, which, started), (key, which, result)))
            .unzip();
        let shared = lock(&prober.shared).as_ref().and_then(Weak::upgrade);
        let Some(shared) = shared else {
            return;
        };
        let keep = shared.probe_results(told);
        let now = Instant::now();
        for ((key, which, started), keep) in runs.into_iter().zip(keep) {
            if !keep {
                self.entries.remove(&(key, which));
                continue;
            }
            if let Some(entry) = self.entries.get_mut(&(key, which)) {
                entry.running = false;
                let next = (started + entry.run.period).max(now);
                self.due.push(Reverse((next, key, which)));
            }
        }
    }
}

/// What starting a run gave: the run in flight, or its result at once.
type Started = Result<What, Result<(), String>>;

fn start_net(
    prober: &Prober,
    token: u64,
    address: std::net::SocketAddr,
    http: Option<(&String, &String)>,
) -> Result<Started, String> {
    let http = http.map(|(h, p)| (h.as_str(), p.as_str()));
    let (run, step) = NetRun::start(address, http)?;
    match step {
        Step::Done(result) => Ok(Err(result)),
        Step::Wait { write } => {
            prober
                .poller
                .add(run.fd.as_fd(), token)
                .and_then(|()| prober.poller.modify(run.fd.as_fd(), token, write))
                .map_err(|e| format!("epoll: {e}"))?;
            Ok(Ok(What::Net(run)))
        }
    }
}

fn start_exec(
    prober: &Prober,
    token: u64,
    plan: &Plan,
    argv: &[String],
    attrs: &SpawnAttributes,
) -> Result<Started, String> {
    let mut run = ExecRun::start(plan, argv, attrs, &prober.lifeline, prober.use_pidfd)?;
    if let Some(fd) = &run.pidfd {
        if prober.poller.add(fd.as_fd(), token).is_err() {
            // Polled instead.
            run.pidfd = None;
        }
    }
    Ok(Ok(What::Exec(run)))
}
