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
use crate::monitor;
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
    pub epoll: Epoll,
    /// Wakes the monitor so it sees new workers and deadlines.
    pub wake: OwnedFd,
}

/// Everything behind the supervisor's one lock.
pub struct State {
    pub config: BTreeMap<String, GroupSpec>,
    /// Worker keys of each group that has workers, in index order.
    pub groups: BTreeMap<String, Vec<u64>>,
    pub workers: HashMap<u64, Worker>,
    pub events: EventQueue,
    next_key: u64,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Workers without a pidfd, whose exits the monitor polls for.
    polled: BTreeSet<u64>,
    pub shutdown: bool,
    /// Set by `shutdown`; later calls fail as if the handle were invalid.
    closed: bool,
}

impl State {
    pub fn polled_workers(&self) -> usize {
        self.polled.len()
    }

    pub fn polled_keys(&self) -> Vec<u64> {
        self.polled.iter().copied().collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    pub fn pop_due_deadline(&mut self, now: Instant) -> Option<u64> {
        match self.deadlines.peek() {
            Some(Reverse((at, _))) if *at <= now => self.deadlines.pop().map(|Reverse((_, k))| k),
            _ => None,
        }
    }

    /// Marks a running worker ready, once.
    pub fn mark_ready(&mut self, key: u64) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if w.phase != Phase::Running || w.ready {
            return;
        }
        w.ready = true;
        let event = w.ready_event();
        self.events.push(event);
    }

    /// Records that a worker has exited and been reaped.
    pub fn worker_exited(&mut self, key: u64, status: ExitStatus) {
        self.polled.remove(&key);
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        w.pidfd = None;
        w.channel = None;
        match w.phase {
            Phase::Stopping(mode) => {
                let event = w.stopped_event(mode, status);
                self.events.push(event);
                self.remove_worker(key);
            }
            Phase::Running => {
                w.ready = false;
                w.phase = Phase::Failed(status);
                let event = w.failed_event("exited", status);
                self.events.push(event);
            }
            Phase::Failed(_) => {}
        }
    }

    pub fn close_channel(&mut self, key: u64) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.channel = None;
        }
    }

    pub fn protocol_error(&mut self, key: u64, error: String) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.channel = None;
            let event = w.protocol_error_event(error);
            self.events.push(event);
        }
    }

    fn remove_worker(&mut self, key: u64) {
        self.polled.remove(&key);
        if let Some(w) = self.workers.remove(&key) {
            if let Some(keys) = self.groups.get_mut(&w.group) {
                keys.retain(|&k| k != key);
                if keys.is_empty() {
                    self.groups.remove(&w.group);
                }
            }
        }
    }

    /// Keys of the workers of `groups` (all groups when `None`), in group then index order.
    fn keys_of(&self, groups: Option<&[String]>) -> Vec<u64> {
        match groups {
            None => self.groups.values().flatten().copied().collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.groups.get(n))
                .flatten()
                .copied()
                .collect(),
        }
    }

    /// Forgets workers that failed: they had their `worker_failed` and are reaped.
    fn forget_failed(&mut self, keys: &[u64]) {
        for &key in keys {
            if matches!(
                self.workers.get(&key).map(|w| w.phase),
                Some(Phase::Failed(_))
            ) {
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
}

/// A supervisor of process groups. Dropping it force-terminates and reaps every worker.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// Serialises the calls that change what runs (configure, start, stop, force, shutdown).
    ops: Mutex<()>,
    options: Options,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Supervisor {
    pub fn new() -> Result<Self> {
        Self::with_options(Options::default())
    }

    pub fn with_options(options: Options) -> Result<Self> {
        let epoll = Epoll::new().map_err(|e| Error::os("epoll_create1", e))?;
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
                deadlines: BinaryHeap::new(),
                polled: BTreeSet::new(),
                shutdown: false,
                closed: false,
            }),
            changed: Condvar::new(),
            epoll,
            wake,
        });
        let for_monitor = Arc::clone(&shared);
        let monitor = std::thread::Builder::new()
            .name("mpsup-monitor".into())
            .stack_size(256 * 1024)
            .spawn(move || monitor::run(for_monitor))
            .map_err(|e| Error::os("spawning the monitor thread", e))?;
        Ok(Supervisor {
            shared,
            ops: Mutex::new(()),
            options,
            monitor: Mutex::new(Some(monitor)),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Replaces the configuration (all or nothing). Running workers are not touched.
    pub fn configure_process_groups(&self, groups_json: &str) -> Result<()> {
        let groups = config::parse_groups(groups_json)?;
        let _op = lock(&self.ops);
        let mut state = self.state();
        state.check_open()?;
        state.config = groups.into_iter().map(|g| (g.name.clone(), g)).collect();
        Ok(())
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
        let mut spawned = Vec::new();
        for spec in &specs {
            self.force_kill(Some(std::slice::from_ref(&spec.name)));
            if let Err(e) = self.spawn_group(spec, &attrs, &mut spawned) {
                self.force_kill_keys(&spawned);
                return Err(e);
            }
        }
        let mut state = self.state();
        state.events.push(EventKind::SupervisorStartGroups {
            group_count: specs.len(),
            worker_count: spawned.len(),
        });
        drop(state);
        sys::eventfd_signal(&self.shared.wake);
        Ok(())
    }

    fn spawn_group(
        &self,
        spec: &GroupSpec,
        attrs: &SpawnAttributes,
        spawned: &mut Vec<u64>,
    ) -> Result<()> {
        let argv: Vec<CString> = spec.argv.iter().map(|a| config::cstring(a)).collect();
        let base_env = base_environment(spec);
        let cwd = spec.cwd.as_deref().map(config::cstring);
        for index in 1..=spec.workers {
            let id = format!("{}#{}", spec.name, index);
            let (ours, theirs) = match spec.control_channel {
                ControlChannelMode::Off => (None, None),
                ControlChannelMode::Auto => match control_socketpair() {
                    Ok((ours, theirs)) => (Some(ours), Some(theirs)),
                    Err(e) => {
                        self.state().events.push(EventKind::StopEventUnavailable {
                            group_name: spec.name.clone(),
                            worker_id: id.clone(),
                            fallback: "terminate_fallback",
                            error: e.to_string(),
                        });
                        (None, None)
                    }
                },
            };
            let mut envp = base_env.clone();
            envp.push(config::cstring(&format!("MPSUP_GROUP={}", spec.name)));
            envp.push(config::cstring(&format!("MPSUP_WORKER_ID={id}")));
            if theirs.is_some() {
                envp.push(config::cstring(&format!("MPSUP_CONTROL_FD={CONTROL_FD}")));
            }
            let request = SpawnRequest {
                argv: &argv,
                envp: &envp,
                cwd: cwd.as_deref(),
                stdout: &spec.stdout,
                stderr: &spec.stderr,
                control: theirs.as_ref(),
            };
            let pid = spawn::spawn(&request, attrs).map_err(|e| Error::Spawn {
                context: format!("group '{}' worker '{id}'", spec.name),
                source: e,
            })?;
            drop(theirs);
            let started_at_ms = sys::now_ms();
            let spawned_at = Instant::now();
            let pidfd = if self.options.use_pidfd {
                sys::pidfd_open(pid).ok()
            } else {
                None
            };
            let has_channel = ours.is_some();
            let readiness = if has_channel {
                spec.readiness
            } else {
                Readiness::Warmup
            };
            let warmup = Duration::from_millis(spec.warmup_ms);
            let worker = Worker {
                group: spec.name.clone(),
                index,
                id,
                pid,
                pidfd,
                channel: ours.map(|fd| ControlChannel {
                    fd,
                    partial: Vec::new(),
                }),
                has_stop_event: has_channel,
                readiness,
                warmup,
                stop_signal: spec.stop_signal.0,
                started_at_ms,
                ready: false,
                phase: Phase::Running,
            };
            let mut state = self.state();
            let key = state.next_key;
            state.next_key += 1;
            state.events.push(EventKind::WorkerSpawned {
                group_name: worker.group.clone(),
                worker_id: worker.id.clone(),
                pid,
                stop_strategy: worker.stop_strategy(),
                control_channel: worker.control_channel_name(),
                readiness: readiness.as_str(),
            });
            if readiness == Readiness::Warmup {
                state.deadlines.push(Reverse((spawned_at + warmup, key)));
            }
            let mut worker = worker;
            // Registered while the lock is held, so the monitor can't see an event for a key
            // it does not know; a failed registration falls back to polling.
            if let Some(pidfd) = &worker.pidfd {
                if self
                    .shared
                    .epoll
                    .add(pidfd.as_raw_fd(), monitor::pidfd_token(key))
                    .is_err()
                {
                    worker.pidfd = None;
                }
            }
            if let Some(ch) = &worker.channel {
                if self
                    .shared
                    .epoll
                    .add(ch.fd.as_raw_fd(), monitor::channel_token(key))
                    .is_err()
                {
                    worker.channel = None;
                }
            }
            if worker.pidfd.is_none() {
                state.polled.insert(key);
            }
            state.groups.entry(spec.name.clone()).or_default().push(key);
            state.workers.insert(key, worker);
            spawned.push(key);
        }
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
                    Phase::Failed(_) => return Ok(false),
                    Phase::Stopping(_) => {}
                    Phase::Running => {
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
        let _op = lock(&self.ops);
        let deadline = deadline_after(graceful_timeout_seconds);
        let mut state = self.state();
        state.check_open()?;
        let keys = state.keys_of(None);
        state.forget_failed(&keys);
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
            if !w.send_stop(drain_inflight) {
                w.signal(w.stop_signal);
            }
            state.events.push(event);
        }
        drop(state);
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
        let names: Vec<String> = {
            let state = self.state();
            state.check_open()?;
            for &name in names {
                if !state.config.contains_key(name) && !state.groups.contains_key(name) {
                    return Err(Error::UnknownGroup(name.to_string()));
                }
            }
            names.iter().map(|n| n.to_string()).collect()
        };
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

    fn force_kill(&self, groups: Option<&[String]>) {
        let keys = self.state().keys_of(groups);
        self.force_kill_keys(&keys);
    }

    fn force_kill_keys(&self, keys: &[u64]) {
        let mut state = self.state();
        state.forget_failed(keys);
        for &key in keys {
            let Some(w) = state.workers.get_mut(&key) else {
                continue;
            };
            if w.phase == Phase::Stopping(StopMode::Forced) {
                continue;
            }
            w.phase = Phase::Stopping(StopMode::Forced);
            w.signal(libc::SIGKILL);
            let event = w.stopping_event(StopMode::Forced);
            state.events.push(event);
        }
        drop(state);
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
        for (name, keys) in &state.groups {
            let entries: Vec<serde_json::Value> = keys
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

impl Drop for Supervisor {
    fn drop(&mut self) {
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
    const OWN: [&str; 3] = ["MPSUP_GROUP", "MPSUP_WORKER_ID", "MPSUP_CONTROL_FD"];
    let mut env: Vec<CString> = Vec::new();
    if spec.inherit_env {
        for (key, value) in std::env::vars_os() {
            let k = key.as_bytes();
            if OWN.iter().any(|o| o.as_bytes() == k) || spec.env.keys().any(|g| g.as_bytes() == k) {
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
        if OWN.contains(&key.as_str()) {
            continue;
        }
        env.push(config::cstring(&format!("{key}={value}")));
    }
    env
}
