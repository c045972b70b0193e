//! The Rust face of a supervisor: typed groups in, typed snapshots, status and events out, and
//! `Duration`s for time (JSON only where text crosses a boundary). Each call validates, works out
//! on the calling thread what a spawn needs, changes the core's target under the lock, and
//! returns or waits on a condition without holding the lock.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::BorrowedFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{self, GroupSpec, RestartOptions};
use crate::core::group::RolloutOptions;
use crate::core::plan::Plan;
use crate::core::state::{Readiness, State};
use crate::core::worker::Key;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::logging::LogSettings;
use crate::options::Options;
use crate::os::{self, Flag};
use crate::report;
use crate::runtime::engine::{Engine, Shared};
use crate::runtime::io::{Io, IoParts};
use crate::runtime::lifeline::{Lifeline, Wanted};
use crate::runtime::listen::Listeners;
use crate::runtime::reaper::Reaper;
use crate::runtime::spawner::{Reply, SpawnOutcome, Spawner, SpawnerParts, ToMonitor};
use crate::runtime::tokens::{Source, Tokens};
use crate::runtime::{child, monitor, plan};
use crate::snapshot::Snapshot;
use crate::status::{ExitWatch, Guarantees, ReusePortHandoff, SpawnMethod, Status};
use crate::sync::lock;
use crate::threads;

mod handover;
mod one_group;
mod start;
mod stop;

use start::prepare_all;

/// How long a forced stop (and `free`) waits for workers to die after SIGKILL before it reports
/// them as unkillable and returns.
pub const KILL_BOUND: Duration = Duration::from_secs(5);

/// A supervisor of process groups. Dropping it force-terminates and reaps every worker.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// Serialises the calls that change what runs (start, stop, force, shutdown) while they
    /// choose their workers; none of them holds it while it waits for exits.
    ops: Mutex<()>,
    monitor: Mutex<Option<JoinHandle<()>>>,
    exit_watch: ExitWatch,
    /// The /proc figures of recent snapshots.
    figures: crate::runtime::figures::Figures,
    /// The process that made it. Its workers, descriptors and threads belong to that process:
    /// a child the host forked has copies of none of them that it may use.
    owner: u32,
    /// The keeper and the cgroups.
    lifeline: Arc<Lifeline>,
    /// The groups' listen sockets (the spawner shares them).
    listeners: Arc<Listeners>,
    /// Finishes the workers' exits (held here too: a forked child's drop must not lock).
    reaper: Arc<Reaper>,
    /// What it was made with (a handover carries it to the next image).
    options: Options,
    /// The logging settings in force, as JSON text (a handover carries them too).
    logging: Mutex<Option<String>>,
    /// The state written by a handover's prepare, until it is aborted (`handover/`).
    handover: Mutex<Option<handover::Prepared>>,
}

impl Supervisor {
    /// A supervisor with the default options (some follow `MPSUP_*` variables of the host's
    /// environment, read now): its monitor thread, the keeper process and an empty
    /// configuration.
    pub fn new() -> Result<Self> {
        Self::with_options(Options::default())
    }

    /// A supervisor with `options`.
    pub fn with_options(options: Options) -> Result<Self> {
        let lifeline = Lifeline::start(&Wanted {
            keeper: options.keeper,
            keeper_path: options.keeper_path.clone(),
            cgroup: options.cgroup,
            cgroup_by_move: options.cgroup_by_move,
        });
        Self::assemble(options, lifeline, Listeners::default(), None)
    }

    /// A supervisor around a lifeline and listen sockets made before it (new ones, or those a
    /// previous image of the host handed over), its logging settings remembered as `logging`.
    fn assemble(
        options: Options,
        lifeline: Lifeline,
        listeners: Listeners,
        logging: Option<String>,
    ) -> Result<Self> {
        let lifeline = Arc::new(lifeline);
        let listeners = Arc::new(listeners);
        let fail = |e: Error| {
            lifeline.close();
            e
        };
        let tokens = Tokens::new().map_err(|e| fail(Error::os("epoll_create1", e)))?;
        let wake = Flag::new().map_err(|e| fail(Error::os("eventfd", e)))?;
        tokens
            .watch(wake.fd(), Source::Wake)
            .map_err(|e| fail(Error::os("epoll_ctl", e)))?;
        let to_monitor = Arc::new(ToMonitor {
            outcomes: Mutex::new(Vec::new()),
            wake,
        });
        let spawner = Arc::new(Spawner::new(SpawnerParts {
            monitor: Arc::clone(&to_monitor),
            tokens: Arc::clone(&tokens),
            lifeline: Arc::clone(&lifeline),
            listeners: Arc::clone(&listeners),
            use_pidfd: options.use_pidfd,
            hook: options.spawn_hook(),
            threads: options.spawn_threads,
            private_table: options.private_fd_table,
        }));
        let reaper = Arc::new(Reaper::new(Arc::clone(&lifeline)));
        let io = Io::new(IoParts {
            tokens: Arc::clone(&tokens),
            spawner: Arc::clone(&spawner),
            reaper: Arc::clone(&reaper),
            lifeline: Arc::clone(&lifeline),
            listeners: Arc::clone(&listeners),
            use_pidfd: options.use_pidfd,
        })
        .map_err(|e| fail(Error::os("eventfd", e)))?;
        let engine = Engine {
            core: State::new(options.event_capacity),
            io,
            monitor_sleeps_until: None,
            to_monitor: Arc::clone(&to_monitor),
            waiting: Default::default(),
        };
        let shared = Arc::new(Shared::new(engine, tokens, to_monitor, spawner));
        let prober = Arc::clone(&shared.lock().io.prober);
        let report: Weak<Shared> = Arc::downgrade(&shared);
        prober.attach(report);
        // The reaper tells the engine of the exits it finished, as long as there is one.
        let told: Weak<Shared> = Arc::downgrade(&shared);
        reaper
            .start(told)
            .map_err(|e| fail(Error::os("spawning the reaper thread", e)))?;
        let monitor = start_monitor(&shared).map_err(|e| {
            reaper.shutdown();
            fail(e)
        })?;
        let exit_watch = if options.use_pidfd && os::pidfd_open(std::process::id() as i32).is_ok() {
            ExitWatch::Pidfd
        } else {
            ExitWatch::Poll
        };
        Ok(Supervisor {
            shared,
            ops: Mutex::new(()),
            monitor: Mutex::new(Some(monitor)),
            exit_watch,
            figures: Default::default(),
            owner: std::process::id(),
            lifeline,
            listeners,
            reaper,
            options,
            logging: Mutex::new(logging),
            handover: Mutex::new(None),
        })
    }

    /// Replaces the configuration (all or nothing). Running workers are not touched; a started
    /// group takes the new one at its next rolling restart or start.
    ///
    /// The groups are checked exactly as `configure_json` checks their JSON text: an invalid
    /// one is `Error::InvalidConfig` naming its path, such as `groups[1].argv`.
    pub fn configure(&self, groups: &[GroupSpec]) -> Result<()> {
        let json = serde_json::to_string(groups)
            .map_err(|e| Error::InvalidConfig(format!("groups: {e}")))?;
        self.configure_json(&json)
    }

    /// `configure` with the groups as JSON text (an array; the schema is
    /// `schema_json("groups")`).
    pub fn configure_json(&self, groups_json: &str) -> Result<()> {
        // On a library thread with a large stack: a deeply nested value must not overflow the
        // host thread's stack, however small it is.
        let json = groups_json.to_owned();
        let groups = threads::on_large_stack(move || config::parse_groups(&json))?;
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.config = groups.into_iter().map(|g| (g.name.clone(), g)).collect();
        Ok(())
    }

    /// Replaces the lifecycle logging settings (all or nothing).
    pub fn configure_logging(&self, settings: &LogSettings) -> Result<()> {
        let json = serde_json::to_string(settings)
            .map_err(|e| Error::InvalidConfig(format!("settings: {e}")))?;
        self.configure_logging_json(&json)
    }

    /// `configure_logging` with the settings as JSON text (the schema is
    /// `schema_json("logging")`).
    pub fn configure_logging_json(&self, settings_json: &str) -> Result<()> {
        let json = settings_json.to_owned();
        let settings = threads::on_large_stack(move || crate::logging::parse_settings(&json))?;
        let logger = crate::logging::Logger::start(settings)?;
        let logger = Arc::new(logger);
        let old = {
            let mut engine = self.shared.lock();
            engine.core.check_open()?;
            *lock(&self.logging) = Some(settings_json.to_owned());
            engine.core.events.set_tap(true);
            lock(&engine.io.captures).logger = Some(Arc::clone(&logger));
            engine.io.out.logger.replace(logger)
        };
        // Dropping waits for the old writer to finish: never under a lock. The output reader
        // let go of its copy above, so this is the last one.
        drop(old);
        Ok(())
    }

    /// How many log records were dropped because an exporter could not keep up.
    pub fn log_records_dropped(&self) -> u64 {
        self.shared
            .lock()
            .io
            .out
            .logger
            .as_ref()
            .map_or(0, |l| l.dropped_total())
    }

    /// Sends `START` to every worker of the named groups, or to none when any is not ready.
    pub fn start_work(&self, names: &[&str]) -> Result<()> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.start_work(names)
    }

    /// Sets the worker count of a started group and returns at once.
    pub fn scale_group(&self, name: &str, workers: u32) -> Result<()> {
        if workers > config::MAX_WORKERS {
            return Err(Error::InvalidArgument(format!(
                "workers: {workers} is out of range 0..={}",
                config::MAX_WORKERS
            )));
        }
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.scale(name, workers, Instant::now())
    }

    /// Starts a rolling restart of each named group to its current configuration and returns
    /// at once. All or nothing: every name is checked before any rollout begins.
    pub fn restart_groups(&self, names: &[&str], options: &RestartOptions) -> Result<()> {
        let options = RolloutOptions::from(options.validate()?);
        let specs: Vec<GroupSpec> = {
            let engine = self.shared.lock();
            let core = &engine.core;
            core.check_open()?;
            core.check_known(names)?;
            let mut specs: Vec<GroupSpec> = Vec::new();
            for &name in names {
                if specs.iter().any(|s| s.name == name) {
                    continue;
                }
                let Some(g) = core.groups.get(name).filter(|g| g.started) else {
                    return Err(Error::InvalidArgument(format!(
                        "group '{name}' is not started"
                    )));
                };
                if g.running_rollout().is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "group '{name}' is already being rolled out"
                    )));
                }
                specs.push(
                    core.config
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| g.plan.spec.clone()),
                );
            }
            specs
        };
        let notify = self.notify_socket(&specs)?;
        let plans = prepare_all(&specs, notify.as_deref(), self.lifeline.has_shim())?;
        // Limits (API.md part 7): a new configuration's limits are checked before any rollout.
        self.lifeline
            .check_limits(&specs)
            .map_err(Error::Unsupported)?;
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        let now = Instant::now();
        for plan in plans {
            let name = plan.spec.name.clone();
            engine.core.begin_rollout(&name, plan, options, now)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` until every worker is ready and no rollout is in progress; false
    /// at once when the timeout is zero, when there are no workers, or a worker or a rollout
    /// failed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<bool> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        if timeout.is_zero() {
            return Ok(false);
        }
        let deadline = deadline_after(timeout);
        loop {
            match engine.core.readiness() {
                Readiness::AllReady => return Ok(true),
                Readiness::NoWorkers | Readiness::Failed => return Ok(false),
                Readiness::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            engine = engine.wait(deadline - now);
        }
    }

    /// Every shown group's workers, with their /proc figures (read between two short holds of
    /// the lock).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let live = self.live_processes()?;
        let figures = self.figures.read(&live);
        let engine = self.shared.lock();
        engine.core.check_open()?;
        Ok(report::snapshot(&engine.core, Instant::now(), &figures))
    }

    /// (pid, started_at_ms) of the live workers a snapshot shows.
    fn live_processes(&self) -> Result<Vec<(i32, u64)>> {
        let engine = self.shared.lock();
        engine.core.check_open()?;
        Ok(report::live_processes(&engine.core))
    }

    /// The snapshot as JSON text (what `snapshot` gives), serialized after the lock is let go.
    pub fn snapshot_json(&self) -> Result<String> {
        serde_json::to_string(&self.snapshot()?).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// Per group: target, running, ready, generation, rollout; and what holds on this host.
    pub fn status(&self) -> Result<Status> {
        let engine = self.shared.lock();
        let core = &engine.core;
        core.check_open()?;
        let captures = lock(&engine.io.captures);
        let mut groups = BTreeMap::new();
        for name in core.config.keys().chain(core.groups.keys()) {
            if groups.contains_key(name) {
                continue;
            }
            let mut status = report::group_status(core, name);
            status.listen = self.listeners.status(name);
            groups.insert(name.clone(), status);
        }
        Ok(Status {
            groups,
            guarantees: Guarantees {
                exit_watch: self.exit_watch,
                spawn: SpawnMethod::PosixSpawn,
                host_death: self.lifeline.host_death(),
                tree_kill: self.lifeline.tree_kill(),
                limits: self.lifeline.limits(),
                parallel_spawn: self.shared.spawner.parallelism() as u32,
                reuse_port_handoff: reuse_port_handoff(),
            },
            notify_socket: engine.io.notify.address().map(str::to_owned),
            notify_received: engine.io.notify.received,
            notify_dropped: engine.io.notify.dropped,
            output_lines_dropped: captures.lines_dropped,
            output_bytes_dropped: captures.file_bytes_dropped(),
        })
    }

    /// Removes and returns up to `max_events` events (0 = all), oldest first.
    pub fn drain_events(&self, max_events: usize) -> Result<Vec<Event>> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        Ok(engine.core.events.drain(max_events))
    }

    /// A descriptor that is readable while undrained events exist, for the host's own poll
    /// loop; it stays the supervisor's and lives as long as it does. Once taken, it crosses a
    /// handover at the same number (the adopted supervisor's).
    pub fn event_fd(&self) -> Result<BorrowedFd<'_>> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        let fd = engine.io.out.fd();
        // SAFETY: the event fd is made with the supervisor and closed only when it is dropped,
        // which the borrow of `self` rules out while the `BorrowedFd` lives.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// False in a child the host forked: there the supervisor must not be used or dropped.
    pub fn owned_by_this_process(&self) -> bool {
        self.owner == std::process::id()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if !self.owned_by_this_process() {
            // A forked child's copy: killing "its" workers would kill the parent's, and its
            // threads do not exist here. Leave everything alone, leaked on purpose.
            std::mem::forget(Arc::clone(&self.shared));
            if let Some(handle) = lock(&self.monitor).take() {
                std::mem::forget(handle);
            }
            self.reaper.forget();
            return;
        }
        let _ = self.shutdown();
        // Its exec probes still running are killed and reaped (not under the engine's lock,
        // which the probe thread may be waiting for).
        let prober = Arc::clone(&self.shared.lock().io.prober);
        prober.stop();
        // Spawns in flight finish; their children arrive closed and are killed.
        self.shared.spawner.shutdown();
        self.shared
            .shutdown
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.to_monitor.wake.set();
        if let Some(handle) = lock(&self.monitor).take() {
            let _ = handle.join();
        }
        // After the monitor: the exits it handed over are finished first.
        self.reaper.shutdown();
        drop(std::mem::take(&mut *lock(&self.shared.to_monitor.outcomes)));
        // Killed children die within milliseconds; reap them before the host goes on.
        let until = Instant::now() + Duration::from_secs(1);
        while child::have_orphans() && Instant::now() < until {
            child::reap_orphans();
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every worker is reaped or abandoned (the keeper kills what is left): the keeper
        // exits and is reaped, the cgroups go.
        self.lifeline.close();
    }
}

/// Starts the monitor thread of `shared` (again, after an aborted handover).
fn start_monitor(shared: &Arc<Shared>) -> Result<JoinHandle<()>> {
    let for_monitor = Arc::clone(shared);
    threads::spawn_named("mpsup-monitor", Some(256 * 1024), move || {
        monitor::run(for_monitor)
    })
    .map_err(|e| Error::os("spawning the monitor thread", e))
}

/// `"migrate"` when the kernel moves the connections queued on a closing `SO_REUSEPORT` socket
/// to the others of its group (`net.ipv4.tcp_migrate_req`), else `"reset"`: what a rolling
/// restart with `reuse_port` does to them.
fn reuse_port_handoff() -> ReusePortHandoff {
    match crate::os::read_text("/proc/sys/net/ipv4/tcp_migrate_req") {
        Ok(v) if v.trim() == "1" => ReusePortHandoff::Migrate,
        _ => ReusePortHandoff::Reset,
    }
}

/// A century stands for "forever" and keeps the arithmetic in range.
const FOREVER: Duration = Duration::from_secs(3_153_600_000);

fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(FOREVER)
}
