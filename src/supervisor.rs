//! The supervisor: configuration, the workers it runs, and the calls of the C API in Rust form.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{self, ControlChannelMode, GroupSpec, Readiness};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind, EventQueue, StopMode, DEFAULT_CAPACITY};
use crate::monitor::{self, channel_token, pidfd_token};
use crate::policy::{self, Decision, Ending, Intensity};
use crate::spawn::{self, SpawnAttributes, SpawnRequest, CONTROL_FD};
use crate::sys::{self, Epoll, ExitStatus};
use crate::worker::{ControlChannel, Phase, Worker};

/// Locks a mutex, recovering the data if a panic poisoned it: every update of the state is
/// complete before anything that could panic, so the data stays consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Options for a new supervisor.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound of the event queue.
    pub event_capacity: usize,
    /// Use pidfds to see exits when the kernel allows. `false` forces the polling fallback
    /// (also forced by the environment variable `MPSUP_DISABLE_PIDFD=1`).
    pub use_pidfd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_capacity: DEFAULT_CAPACITY,
            use_pidfd: std::env::var_os("MPSUP_DISABLE_PIDFD").is_none_or(|v| v != "1"),
        }
    }
}

/// What the monitor and the calls share.
pub struct Shared {
    pub state: Mutex<State>,
    /// Notified whenever a worker becomes ready, exits or is reaped.
    pub changed: Condvar,
    pub epoll: Arc<Epoll>,
    /// Wakes the monitor so it sees new workers and deadlines.
    pub wake: OwnedFd,
}

/// A deadline the monitor keeps for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Warmup,
    ReadyTimeout,
    Heartbeat,
    Respawn,
}

/// A started group: the configuration it was started with, its workers, its recent respawns.
pub struct GroupRun {
    pub spec: Arc<GroupSpec>,
    /// Worker keys in index order.
    pub keys: Vec<u64>,
    pub intensity: Intensity,
    /// `start_work` has been called for it: respawned workers get `START` too.
    pub work_started: bool,
}

/// Everything behind the supervisor's one lock.
pub struct State {
    pub config: BTreeMap<String, GroupSpec>,
    pub groups: BTreeMap<String, GroupRun>,
    pub workers: HashMap<u64, Worker>,
    pub events: EventQueue,
    next_key: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    /// Workers without a pidfd, whose exits the monitor polls for.
    polled: BTreeSet<u64>,
    epoll: Arc<Epoll>,
    use_pidfd: bool,
    pub shutdown: bool,
    /// Set by `shutdown`; later calls fail as if the handle were invalid.
    closed: bool,
}

impl State {
    pub fn polled_keys(&self) -> Vec<u64> {
        self.polled.iter().copied().collect()
    }

    pub fn has_polled(&self) -> bool {
        !self.polled.is_empty()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    pub fn pop_due_timer(&mut self, now: Instant) -> Option<(u64, Timer)> {
        match self.timers.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.timers.pop().map(|Reverse((_, k, t))| (k, t))
            }
            _ => None,
        }
    }

    fn add_timer(&mut self, at: Instant, key: u64, timer: Timer) {
        // Timers of workers that are gone are skipped when they fire; drop them in bulk now
        // and then, so that start/stop cycles with long timeouts do not grow the heap.
        if self.timers.len() > 4 * self.workers.len() + 1024 {
            let workers = &self.workers;
            self.timers
                .retain(|Reverse((_, k, _))| workers.contains_key(k));
        }
        self.timers.push(Reverse((at, key, timer)));
    }

    /// Takes a freshly launched worker into the state: events, timers, the monitor's epoll set,
    /// the bootstrap line. `slot` replaces an old key in its group (a respawn).
    fn adopt(
        &mut self,
        mut worker: Worker,
        spec: &GroupSpec,
        spawned_at: Instant,
        slot: Option<u64>,
    ) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.events.push(worker.spawned_event());
        if worker.readiness == Readiness::Warmup {
            self.add_timer(
                spawned_at + Duration::from_millis(spec.warmup_ms),
                key,
                Timer::Warmup,
            );
        }
        if spec.ready_timeout_ms > 0 {
            self.add_timer(
                spawned_at + Duration::from_millis(spec.ready_timeout_ms),
                key,
                Timer::ReadyTimeout,
            );
        }
        // Registered under the lock, so the monitor never sees an event for a key it does not
        // know; a failed registration falls back to polling.
        if let Some(pidfd) = &worker.pidfd {
            if self.epoll.add(pidfd.as_raw_fd(), pidfd_token(key)).is_err() {
                worker.pidfd = None;
            }
        }
        if let Some(ch) = &worker.channel {
            if self
                .epoll
                .add(ch.fd.as_raw_fd(), channel_token(key))
                .is_err()
            {
                worker.channel = None;
            }
        }
        if let Some(payload) = &spec.bootstrap {
            let line = format!("BOOTSTRAP {payload}");
            worker.send(&self.epoll, channel_token(key), line.as_bytes());
        }
        // A worker respawned after its group was started gets START at once: it waits for it
        // (after READY) like the first one did, and the host cannot send it again.
        if self.groups.get(&spec.name).is_some_and(|g| g.work_started) {
            worker.send(&self.epoll, channel_token(key), b"START");
        }
        if worker.pidfd.is_none() {
            self.polled.insert(key);
        }
        let run = self
            .groups
            .entry(spec.name.clone())
            .or_insert_with(|| GroupRun {
                spec: Arc::new(spec.clone()),
                keys: Vec::new(),
                intensity: Intensity::default(),
                work_started: false,
            });
        match slot.and_then(|old| run.keys.iter().position(|&k| k == old)) {
            Some(i) => run.keys[i] = key,
            None => run.keys.push(key),
        }
        self.workers.insert(key, worker);
        key
    }

    /// Marks a running worker ready, once.
    pub fn mark_ready(&mut self, key: u64) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        // A worker being killed for a timeout is not ready, whatever it says now.
        if w.phase != Phase::Running || w.ready || w.failure_reason.is_some() {
            return;
        }
        let now = Instant::now();
        w.ready = true;
        w.backoff.ready_at = Some(now);
        let event = w.ready_event();
        if let Some(timeout) = w.heartbeat_timeout {
            w.last_heartbeat = Some(now);
            self.add_timer(now + timeout, key, Timer::Heartbeat);
        }
        self.events.push(event);
    }

    pub fn heartbeat(&mut self, key: u64) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.last_heartbeat = Some(Instant::now());
            w.last_heartbeat_ms = Some(sys::now_ms());
        }
    }

    /// Kills a worker for a timeout; its `worker_failed` (with `reason`) comes when it is reaped.
    pub fn fail_for(&mut self, key: u64, reason: &'static str) {
        if let Some(w) = self.workers.get_mut(&key) {
            if w.phase == Phase::Running && w.failure_reason.is_none() {
                w.failure_reason = Some(reason);
                w.signal(libc::SIGKILL);
            }
        }
    }

    /// Fails a worker whose heartbeat is overdue, or looks again when it is due.
    pub fn check_heartbeat(&mut self, key: u64, now: Instant) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        let (Some(timeout), Some(last)) = (w.heartbeat_timeout, w.last_heartbeat) else {
            return;
        };
        if w.phase != Phase::Running {
            return;
        }
        if last + timeout <= now {
            self.fail_for(key, "heartbeat_timeout");
        } else {
            self.add_timer(last + timeout, key, Timer::Heartbeat);
        }
    }

    pub fn check_ready_timeout(&mut self, key: u64) {
        if self
            .workers
            .get(&key)
            .is_some_and(|w| w.phase == Phase::Running && !w.ready)
        {
            self.fail_for(key, "ready_timeout");
        }
    }

    /// Records that a worker has exited and been reaped, and applies the restart policy when
    /// it ended unasked.
    pub fn worker_exited(&mut self, key: u64, status: ExitStatus) {
        self.polled.remove(&key);
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        w.close_pidfd(&self.epoll);
        w.close_channel(&self.epoll);
        w.last_exit = status;
        match w.phase {
            Phase::Stopping(mode) => {
                let event = w.stopped_event(mode, status);
                self.events.push(event);
                self.remove_worker(key);
            }
            Phase::Running => {
                w.ready = false;
                let reason = w.failure_reason.take().unwrap_or("exited");
                let event = w.failed_event(reason, status);
                self.events.push(event);
                let ending = if reason == "exited" && status.code == Some(0) {
                    Ending::Clean
                } else {
                    Ending::Failure
                };
                self.apply_policy(key, ending);
            }
            Phase::Restarting | Phase::Failed => {}
        }
    }

    fn apply_policy(&mut self, key: u64, ending: Ending) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        let Some(run) = self.groups.get_mut(&w.group) else {
            w.phase = Phase::Failed;
            return;
        };
        let spec = run.spec.restart_spec();
        match policy::decide(
            &spec,
            ending,
            &mut w.backoff,
            &mut run.intensity,
            Instant::now(),
        ) {
            Decision::Leave => w.phase = Phase::Failed,
            Decision::Restart { attempt, delay } => {
                w.phase = Phase::Restarting;
                let event = EventKind::WorkerRestarting {
                    group_name: w.group.clone(),
                    worker_id: w.id.clone(),
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                };
                self.events.push(event);
                self.add_timer(Instant::now() + delay, key, Timer::Respawn);
            }
            Decision::FailGroup { restarts } => {
                w.phase = Phase::Failed;
                let group = w.group.clone();
                self.fail_group(&group, restarts, spec.window);
            }
        }
    }

    /// Too many respawns: kill every worker of the group; nothing respawns until it is
    /// started again.
    fn fail_group(&mut self, group: &str, restarts: u32, window: Duration) {
        self.events.push(EventKind::GroupFailed {
            group_name: group.to_string(),
            restarts,
            window_ms: window.as_millis() as u64,
        });
        let keys = self
            .groups
            .get(group)
            .map(|g| g.keys.clone())
            .unwrap_or_default();
        for key in keys {
            let Some(w) = self.workers.get_mut(&key) else {
                continue;
            };
            match w.phase {
                Phase::Running => {
                    w.phase = Phase::Stopping(StopMode::Forced);
                    w.signal(libc::SIGKILL);
                    let event = w.stopping_event(StopMode::Forced);
                    self.events.push(event);
                }
                Phase::Restarting => w.phase = Phase::Failed,
                Phase::Stopping(_) | Phase::Failed => {}
            }
        }
    }

    /// Spawns a new process for a worker waiting in `Restarting`.
    /// Spawns new processes for workers waiting in `Restarting`.
    pub fn respawn_all(&mut self, keys: &[u64]) {
        let due = |k: &u64| {
            self.workers
                .get(k)
                .is_some_and(|w| w.phase == Phase::Restarting)
        };
        if !keys.iter().any(due) {
            return;
        }
        // Made once for the burst: it lists the host's descriptors, O(descriptors).
        let attrs = SpawnAttributes::new();
        for &key in keys {
            self.respawn(key, &attrs);
        }
    }

    fn respawn(&mut self, key: u64, attrs: &std::io::Result<SpawnAttributes>) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        if w.phase != Phase::Restarting {
            return;
        }
        let Some(spec) = self.groups.get(&w.group).map(|g| Arc::clone(&g.spec)) else {
            return;
        };
        let launched = match attrs {
            Ok(attrs) => launch(
                &spec,
                &base_environment(&spec),
                w.index,
                self.use_pidfd,
                attrs,
            ),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        match launched {
            Ok(launched) => {
                let old = self.workers.remove(&key).expect("looked up above");
                let mut worker = launched.worker;
                worker.restarts = old.restarts + 1;
                worker.backoff = old.backoff;
                if let Some(event) = launched.unavailable {
                    self.events.push(event);
                }
                self.adopt(worker, &spec, launched.spawned_at, Some(key));
            }
            Err(_) => {
                let w = self.workers.get_mut(&key).expect("looked up above");
                w.phase = Phase::Running;
                let event = EventKind::WorkerFailed {
                    group_name: w.group.clone(),
                    worker_id: w.id.clone(),
                    pid: w.pid,
                    reason: "spawn_failed",
                    exit_code: None,
                    signal: None,
                };
                self.events.push(event);
                self.apply_policy(key, Ending::Failure);
            }
        }
    }

    pub fn close_channel(&mut self, key: u64) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.close_channel(&self.epoll);
        }
    }

    pub fn protocol_error(&mut self, key: u64, error: String) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.close_channel(&self.epoll);
            let event = w.protocol_error_event(error);
            self.events.push(event);
        }
    }

    /// Sends what a worker's channel could not take before.
    pub fn flush(&mut self, key: u64) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.flush(&self.epoll, channel_token(key));
        }
    }

    fn remove_worker(&mut self, key: u64) {
        self.polled.remove(&key);
        if let Some(mut w) = self.workers.remove(&key) {
            w.close_pidfd(&self.epoll);
            w.close_channel(&self.epoll);
            if let Some(run) = self.groups.get_mut(&w.group) {
                run.keys.retain(|&k| k != key);
                if run.keys.is_empty() {
                    self.groups.remove(&w.group);
                }
            }
        }
    }

    /// Keys of the workers of `groups` (all groups when `None`), in group then index order.
    fn keys_of(&self, groups: Option<&[String]>) -> Vec<u64> {
        match groups {
            None => self
                .groups
                .values()
                .flat_map(|g| g.keys.iter().copied())
                .collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.groups.get(n))
                .flat_map(|g| g.keys.iter().copied())
                .collect(),
        }
    }

    /// Every tracked worker: those of the groups in order, then any other (none, normally).
    fn all_keys(&self) -> Vec<u64> {
        let mut keys = self.keys_of(None);
        let listed: std::collections::HashSet<u64> = keys.iter().copied().collect();
        keys.extend(self.workers.keys().filter(|k| !listed.contains(k)));
        keys
    }

    /// Forgets the dead among `keys` and sends SIGKILL to the process groups of the rest, each
    /// with one `worker_stopping` (forced).
    fn kill_now(&mut self, keys: &[u64]) {
        self.forget_dead(keys);
        for &key in keys {
            let Some(w) = self.workers.get_mut(&key) else {
                continue;
            };
            if w.phase == Phase::Stopping(StopMode::Forced) {
                continue;
            }
            w.phase = Phase::Stopping(StopMode::Forced);
            w.signal(libc::SIGKILL);
            let event = w.stopping_event(StopMode::Forced);
            self.events.push(event);
        }
    }

    /// Forgets workers without a process (failed, or waiting to be respawned).
    fn forget_dead(&mut self, keys: &[u64]) {
        for &key in keys {
            if self.workers.get(&key).is_some_and(|w| !w.alive()) {
                self.remove_worker(key);
            }
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::InvalidHandle("the supervisor has been freed".into()));
        }
        Ok(())
    }

    fn check_known(&self, names: &[&str]) -> Result<()> {
        for &name in names {
            if !self.config.contains_key(name) && !self.groups.contains_key(name) {
                return Err(Error::UnknownGroup(name.to_string()));
            }
        }
        Ok(())
    }
}

/// A worker process just spawned, not yet known to the state.
struct Launched {
    worker: Worker,
    spawned_at: Instant,
    /// `stop_event_unavailable`, when the control channel could not be made.
    unavailable: Option<EventKind>,
}

/// Spawns worker `index` of `spec`.
/// `base_env` is `base_environment(spec)`, computed once per group rather than per worker.
fn launch(
    spec: &GroupSpec,
    base_env: &[CString],
    index: u32,
    use_pidfd: bool,
    attrs: &SpawnAttributes,
) -> std::io::Result<Launched> {
    let id = format!("{}#{}", spec.name, index);
    let mut unavailable = None;
    let (ours, theirs) = match spec.control_channel {
        ControlChannelMode::Off => (None, None),
        ControlChannelMode::Auto => match control_socketpair() {
            Ok((ours, theirs)) => (Some(ours), Some(theirs)),
            Err(e) => {
                unavailable = Some(EventKind::StopEventUnavailable {
                    group_name: spec.name.clone(),
                    worker_id: id.clone(),
                    fallback: "terminate_fallback",
                    error: e.to_string(),
                });
                (None, None)
            }
        },
    };
    let argv: Vec<CString> = spec.argv.iter().map(|a| config::cstring(a)).collect();
    let mut envp = base_env.to_vec();
    envp.push(config::cstring(&format!("MPSUP_GROUP={}", spec.name)));
    envp.push(config::cstring(&format!("MPSUP_WORKER_ID={id}")));
    if theirs.is_some() {
        envp.push(config::cstring(&format!("MPSUP_CONTROL_FD={CONTROL_FD}")));
        if spec.bootstrap.is_some() {
            envp.push(config::cstring("MPSUP_BOOTSTRAP=1"));
        }
        if spec.start_gate {
            envp.push(config::cstring("MPSUP_START_GATE=1"));
        }
    }
    let cwd = spec.cwd.as_deref().map(config::cstring);
    let request = SpawnRequest {
        argv: &argv,
        envp: &envp,
        cwd: cwd.as_deref(),
        stdout: &spec.stdout,
        stderr: &spec.stderr,
        control: theirs.as_ref(),
    };
    let pid = spawn::spawn(&request, attrs)?;
    drop(theirs);
    let spawned_at = Instant::now();
    let pidfd = if use_pidfd {
        sys::pidfd_open(pid).ok()
    } else {
        None
    };
    let has_channel = ours.is_some();
    let worker = Worker {
        group: spec.name.clone(),
        index,
        id,
        pid,
        pidfd,
        channel: ours.map(|fd| ControlChannel {
            fd,
            reader: Default::default(),
            outbox: Vec::new(),
        }),
        has_stop_event: has_channel,
        readiness: if has_channel {
            spec.readiness
        } else {
            Readiness::Warmup
        },
        heartbeat_timeout: (spec.heartbeat_timeout_ms > 0)
            .then(|| Duration::from_millis(spec.heartbeat_timeout_ms)),
        stop_signal: spec.stop_signal.0,
        started_at_ms: sys::now_ms(),
        ready: false,
        phase: Phase::Running,
        last_exit: ExitStatus::default(),
        failure_reason: None,
        restarts: 0,
        backoff: Default::default(),
        last_heartbeat: None,
        last_heartbeat_ms: None,
    };
    Ok(Launched {
        worker,
        spawned_at,
        unavailable,
    })
}

/// A supervisor of process groups. Dropping it force-terminates and reaps every worker.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// Serialises the calls that change what runs (start, stop, force, shutdown).
    ops: Mutex<()>,
    options: Options,
    monitor: Mutex<Option<JoinHandle<()>>>,
    /// The process that made it. Its workers, descriptors and monitor thread belong to that
    /// process: a child the host forked has copies of none of them that it may use.
    owner: u32,
}

impl Supervisor {
    pub fn new() -> Result<Self> {
        Self::with_options(Options::default())
    }

    pub fn with_options(options: Options) -> Result<Self> {
        let epoll = Arc::new(Epoll::new().map_err(|e| Error::os("epoll_create1", e))?);
        let wake = sys::eventfd().map_err(|e| Error::os("eventfd", e))?;
        epoll
            .add(wake.as_raw_fd(), monitor::WAKE_TOKEN)
            .map_err(|e| Error::os("epoll_ctl", e))?;
        let events =
            EventQueue::new(options.event_capacity).map_err(|e| Error::os("eventfd", e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config: BTreeMap::new(),
                groups: BTreeMap::new(),
                workers: HashMap::new(),
                events,
                next_key: 1,
                timers: BinaryHeap::new(),
                polled: BTreeSet::new(),
                epoll: Arc::clone(&epoll),
                use_pidfd: options.use_pidfd,
                shutdown: false,
                closed: false,
            }),
            changed: Condvar::new(),
            epoll,
            wake,
        });
        let for_monitor = Arc::clone(&shared);
        let monitor = crate::threads::spawn_named("mpsup-monitor", Some(256 * 1024), move || {
            monitor::run(for_monitor)
        })
        .map_err(|e| Error::os("spawning the monitor thread", e))?;
        Ok(Supervisor {
            shared,
            ops: Mutex::new(()),
            options,
            monitor: Mutex::new(Some(monitor)),
            owner: std::process::id(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Replaces the configuration (all or nothing). Running workers are not touched.
    pub fn configure_process_groups(&self, groups_json: &str) -> Result<()> {
        let groups = config::parse_groups(groups_json)?;
        // Only the state lock: a configuration is read once, at the start of a group, so this
        // need not wait for a long stop on another thread.
        let mut state = self.state();
        state.check_open()?;
        state.config = groups.into_iter().map(|g| (g.name.clone(), g)).collect();
        Ok(())
    }

    /// Replaces the lifecycle logging settings (all or nothing).
    pub fn configure_lifecycle_logging(&self, settings_json: &str) -> Result<()> {
        let settings = crate::logging::parse_settings(settings_json)?;
        let logger = crate::logging::Logger::start(settings)?;
        let old = {
            let mut state = self.state();
            state.check_open()?;
            state.events.set_logger(Some(logger))
        };
        // Dropping waits for the old writer to finish: never under the lock.
        drop(old);
        Ok(())
    }

    /// How many log records were dropped because an exporter could not keep up.
    pub fn log_records_dropped(&self) -> u64 {
        self.state()
            .events
            .logger()
            .map_or(0, |l| l.dropped_total())
    }

    /// Starts the named groups in order, force-terminating any of their running workers first.
    pub fn start_groups(&self, names: &[&str]) -> Result<()> {
        let _op = lock(&self.ops);
        let specs: Vec<GroupSpec> = {
            let state = self.state();
            state.check_open()?;
            let mut seen = BTreeSet::new();
            let mut specs = Vec::new();
            for &name in names {
                let spec = state
                    .config
                    .get(name)
                    .ok_or_else(|| Error::UnknownGroup(name.to_string()))?;
                if seen.insert(name) {
                    specs.push(spec.clone());
                }
            }
            specs
        };
        let attrs = SpawnAttributes::new().map_err(|e| Error::Spawn {
            context: "preparing posix_spawn attributes".into(),
            source: e,
        })?;
        // The running workers of every named group go first (the original's restart).
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        self.force_kill(Some(&names));
        // Then every worker is spawned, and all are adopted under one lock together with the
        // `supervisor_start_groups` event: no event of the new workers can come before it, and
        // the monitor reads the READY lines in a few large batches instead of waking once per
        // worker while the spawning goes on.
        let mut launched = Vec::new();
        let mut failure = None;
        'groups: for spec in &specs {
            let base_env = base_environment(spec);
            for index in 1..=spec.workers {
                match launch(spec, &base_env, index, self.options.use_pidfd, &attrs) {
                    Ok(l) => launched.push((spec, l)),
                    Err(e) => {
                        failure = Some(Error::Spawn {
                            context: format!(
                                "group '{}' worker '{}#{index}'",
                                spec.name, spec.name
                            ),
                            source: e,
                        });
                        break 'groups;
                    }
                }
            }
        }
        let mut spawned = Vec::with_capacity(launched.len());
        {
            let mut state = self.state();
            for name in &names {
                // A fresh start forgets the group's respawn history.
                state.groups.remove(name);
            }
            for (spec, l) in launched {
                if let Some(event) = l.unavailable {
                    state.events.push(event);
                }
                spawned.push(state.adopt(l.worker, spec, l.spawned_at, None));
            }
            if failure.is_none() {
                state.events.push(EventKind::SupervisorStartGroups {
                    group_count: specs.len(),
                    worker_count: spawned.len(),
                });
            }
        }
        sys::eventfd_signal(&self.shared.wake);
        self.shared.changed.notify_all();
        if let Some(e) = failure {
            self.force_kill_keys(&spawned);
            return Err(e);
        }
        Ok(())
    }

    /// Sends `START` to every worker of the named groups, or to none when any is not ready.
    pub fn start_work(&self, names: &[&str]) -> Result<()> {
        // Atomic under the state lock alone, so it does not wait for a long stop.
        let mut guard = self.state();
        let state = &mut *guard;
        state.check_open()?;
        state.check_known(names)?;
        let mut seen = BTreeSet::new();
        let names: Vec<String> = names
            .iter()
            .filter(|n| seen.insert(**n))
            .map(|n| n.to_string())
            .collect();
        let keys = state.keys_of(Some(&names));
        let mut missing: Vec<String> = names
            .iter()
            .filter(|n| !state.groups.contains_key(n.as_str()))
            .map(|n| format!("{n}#*"))
            .collect();
        missing.extend(
            keys.iter()
                .filter_map(|k| state.workers.get(k))
                .filter(|w| !(w.phase == Phase::Running && w.ready))
                .map(|w| w.id.clone()),
        );
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::NotReady(format!(
                "workers not ready: {}",
                missing.join(", ")
            )));
        }
        for &key in &keys {
            if let Some(w) = state.workers.get_mut(&key) {
                w.send(&state.epoll, channel_token(key), b"START");
            }
        }
        for name in &names {
            if let Some(run) = state.groups.get_mut(name) {
                run.work_started = true;
            }
        }
        state.events.push(EventKind::SupervisorStartWork {
            group_count: names.len(),
            worker_count: keys.len(),
        });
        Ok(())
    }

    /// Waits until every worker is ready; false at once when there are none or one failed.
    pub fn wait_ready(&self, timeout_seconds: f64) -> Result<bool> {
        let mut state = self.state();
        state.check_open()?;
        if timeout_seconds.is_nan() || timeout_seconds <= 0.0 {
            return Ok(false);
        }
        let deadline = deadline_after(timeout_seconds);
        loop {
            let mut any = false;
            let mut all_ready = true;
            for w in state.workers.values() {
                match w.phase {
                    Phase::Failed => return Ok(false),
                    Phase::Stopping(_) => {}
                    Phase::Running | Phase::Restarting => {
                        any = true;
                        all_ready &= w.ready;
                    }
                }
            }
            if !any || state.closed {
                return Ok(false);
            }
            if all_ready {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops every running worker gracefully; `Error::Timeout` when some did not stop in time.
    pub fn stop_groups(&self, graceful_timeout_seconds: f64, drain_inflight: bool) -> Result<()> {
        if graceful_timeout_seconds.is_nan() || graceful_timeout_seconds < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "graceful_timeout_seconds must be zero or more, got {graceful_timeout_seconds}"
            )));
        }
        // The deadline counts from the call, even when it waits for another call first.
        let deadline = deadline_after(graceful_timeout_seconds);
        let _op = lock(&self.ops);
        let mut guard = self.state();
        let state = &mut *guard;
        state.check_open()?;
        let keys = state.keys_of(None);
        state.forget_dead(&keys);
        let keys = state.keys_of(None);
        for &key in &keys {
            let Some(w) = state.workers.get_mut(&key) else {
                continue;
            };
            if w.phase != Phase::Running {
                continue;
            }
            w.phase = Phase::Stopping(StopMode::Graceful);
            let event = w.stopping_event(StopMode::Graceful);
            if !w.send_stop(&state.epoll, channel_token(key), drain_inflight) {
                w.signal(w.stop_signal);
            }
            state.events.push(event);
        }
        drop(guard);
        // Stopping workers no longer count for wait_ready on other threads.
        self.shared.changed.notify_all();
        match self.wait_gone(&keys, Some(deadline)) {
            None => Ok(()),
            Some(id) => Err(Error::Timeout(format!(
                "worker '{id}' did not stop within graceful timeout"
            ))),
        }
    }

    /// Kills the workers of the named groups with SIGKILL to their process groups and reaps them.
    pub fn force_terminate_groups(&self, names: &[&str]) -> Result<()> {
        let _op = lock(&self.ops);
        {
            let state = self.state();
            state.check_open()?;
            state.check_known(names)?;
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.force_kill(Some(&names));
        Ok(())
    }

    /// Force-terminates every worker and makes later calls fail with an invalid-handle error.
    pub fn shutdown(&self) {
        let _op = lock(&self.ops);
        self.force_kill(None);
        self.state().closed = true;
        self.shared.changed.notify_all();
    }

    /// Kills the workers of `groups` (every worker when `None`) and waits until they are reaped.
    /// The workers are chosen and marked under one lock, so that none can be respawned unseen
    /// in between.
    fn force_kill(&self, groups: Option<&[String]>) {
        let keys = {
            let mut state = self.state();
            let keys = match groups {
                Some(_) => state.keys_of(groups),
                None => state.all_keys(),
            };
            state.kill_now(&keys);
            keys
        };
        self.shared.changed.notify_all();
        self.wait_gone(&keys, None);
    }

    fn force_kill_keys(&self, keys: &[u64]) {
        self.state().kill_now(keys);
        self.shared.changed.notify_all();
        self.wait_gone(keys, None);
    }

    /// Waits until none of `keys` is tracked any more (the monitor reaped them), or the deadline.
    /// Returns the id of the first worker still there.
    fn wait_gone(&self, keys: &[u64], deadline: Option<Instant>) -> Option<String> {
        let mut state = self.state();
        loop {
            let first = keys
                .iter()
                .find_map(|k| state.workers.get(k).map(|w| w.id.clone()));
            let first = first?;
            let wait = match deadline {
                None => Duration::from_secs(1),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Some(first);
                    }
                    d - now
                }
            };
            state = self
                .shared
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The snapshot: group name → worker entries in index order.
    pub fn snapshot(&self) -> Result<serde_json::Value> {
        let state = self.state();
        state.check_open()?;
        let mut out = serde_json::Map::new();
        for (name, run) in &state.groups {
            let entries: Vec<serde_json::Value> = run
                .keys
                .iter()
                .filter_map(|k| state.workers.get(k))
                .map(|w| serde_json::to_value(w.snapshot()).expect("snapshot serializes"))
                .collect();
            out.insert(name.clone(), serde_json::Value::Array(entries));
        }
        Ok(serde_json::Value::Object(out))
    }

    /// Removes and returns up to `max_events` events (0 = all), oldest first.
    pub fn drain_events(&self, max_events: usize) -> Result<Vec<Event>> {
        let mut state = self.state();
        state.check_open()?;
        Ok(state.events.drain(max_events))
    }

    /// A descriptor that is readable while undrained events exist; owned by the supervisor.
    pub fn event_fd(&self) -> Result<i32> {
        let state = self.state();
        state.check_open()?;
        Ok(state.events.fd())
    }
}

impl Supervisor {
    /// False in a child the host forked: there the supervisor must not be used or dropped.
    pub fn owned_by_this_process(&self) -> bool {
        self.owner == std::process::id()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if !self.owned_by_this_process() {
            // A forked child's copy: killing "its" workers would kill the parent's, and its
            // monitor thread does not exist here. Leave everything alone.
            if let Some(handle) = lock(&self.monitor).take() {
                std::mem::forget(handle);
            }
            return;
        }
        self.shutdown();
        self.state().shutdown = true;
        sys::eventfd_signal(&self.shared.wake);
        if let Some(handle) = lock(&self.monitor).take() {
            let _ = handle.join();
        }
    }
}

fn deadline_after(seconds: f64) -> Instant {
    let now = Instant::now();
    // A century stands for "forever" and keeps the arithmetic in range.
    let seconds = seconds.min(3_153_600_000.0);
    now + Duration::from_secs_f64(seconds)
}

/// A control socket pair: ours non-blocking, theirs numbered above `CONTROL_FD` so that the
/// spawn's dup2 to `CONTROL_FD` always makes a fresh, inheritable descriptor.
fn control_socketpair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (ours, mut theirs) = sys::socketpair()?;
    sys::set_nonblocking(&ours)?;
    if theirs.as_raw_fd() <= CONTROL_FD {
        theirs = sys::dup_at_least(&theirs, CONTROL_FD + 1)?;
    }
    Ok((ours, theirs))
}

/// The environment a group's workers start from: the host's (unless `inherit_env` is false)
/// without the supervisor's own variables, then the group's `env`.
fn base_environment(spec: &GroupSpec) -> Vec<CString> {
    fn own(key: &[u8]) -> bool {
        key.starts_with(b"MPSUP_")
    }
    let mut env: Vec<CString> = Vec::new();
    if spec.inherit_env {
        for (key, value) in std::env::vars_os() {
            let k = key.as_bytes();
            if own(k) || spec.env.keys().any(|g| g.as_bytes() == k) {
                continue;
            }
            let mut entry = k.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            if let Ok(c) = CString::new(entry) {
                env.push(c);
            }
        }
    }
    for (key, value) in &spec.env {
        if own(key.as_bytes()) {
            continue;
        }
        env.push(config::cstring(&format!("{key}={value}")));
    }
    env
}
