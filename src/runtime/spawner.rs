//! The spawner: threads the library owns that run every spawn and respawn, never under the state
//! lock. Threads start as work arrives, up to one per core, so a big start spawns on every core.
//! The jobs of one submission share their spawn attributes, made once by whichever thread needs
//! them first: listing the host's leaked descriptors is O(descriptors), too dear per spawn.

use std::collections::VecDeque;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::clock;
use crate::config::{self, ControlChannelMode};
use crate::core::effects::SpawnJob;
use crate::core::worker::Key;
use crate::os::spawn::{self, Command, SpawnAttributes, FIRST_INHERITED};
use crate::os::{self, Flag};
use crate::runtime::child::Child;
use crate::runtime::lifeline::Lifeline;
use crate::runtime::listen::{GroupSockets, Listeners};
use crate::sync::lock;
use crate::threads;

/// The most jobs one spawner thread takes at once.
const BURST: usize = 32;

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

/// What the jobs of one submission share.
struct Batch {
    reply: Reply,
    attrs: OnceLock<Result<SpawnAttributes, (std::io::ErrorKind, String)>>,
}

impl Batch {
    fn attrs(&self) -> std::io::Result<&SpawnAttributes> {
        self.attrs
            .get_or_init(|| SpawnAttributes::new().map_err(|e| (e.kind(), e.to_string())))
            .as_ref()
            .map_err(|(kind, text)| std::io::Error::new(*kind, text.clone()))
    }
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
}

pub struct Spawner {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    max_threads: usize,
}

impl Spawner {
    /// `threads`: at most this many spawner threads (None: one per core, up to 8).
    pub fn new(
        monitor: Arc<ToMonitor>,
        use_pidfd: bool,
        hook: Option<SpawnHook>,
        threads: Option<usize>,
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
            }),
            threads: Mutex::new(Vec::new()),
            max_threads: cores.clamp(1, 8),
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
        self.max_threads
    }

    /// Queues jobs; their outcomes go to `reply`. A job that cannot be queued (after shutdown,
    /// or when no thread can be started) gets a failed outcome at once.
    pub fn submit(&self, jobs: Vec<SpawnJob>, reply: Reply) {
        if jobs.is_empty() {
            return;
        }
        let (waiting, idle) = {
            let mut q = lock(&self.shared.queue);
            if q.shutdown {
                drop(q);
                for job in jobs {
                    deliver(&self.shared, &reply, job.key, Err(shutting_down()));
                }
                return;
            }
            let batch = Arc::new(Batch {
                reply: reply.clone(),
                attrs: OnceLock::new(),
            });
            q.jobs
                .extend(jobs.into_iter().map(|j| (j, Arc::clone(&batch))));
            (q.jobs.len(), q.idle)
        };
        self.shared.work.notify_all();
        let mut threads = lock(&self.threads);
        let wanted = waiting.div_ceil(BURST).min(self.max_threads);
        while threads.len() < wanted && idle < waiting {
            let shared = Arc::clone(&self.shared);
            match threads::spawn_named("mpsup-spawner", Some(256 * 1024), move || run(&shared)) {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    if threads.is_empty() {
                        // Nobody would ever run them: fail what is queued.
                        let jobs: Vec<_> = lock(&self.shared.queue).jobs.drain(..).collect();
                        for (job, batch) in jobs {
                            let reply = &batch.reply;
                            let error = std::io::Error::new(
                                e.kind(),
                                format!("starting a spawner thread: {e}"),
                            );
                            deliver(&self.shared, reply, job.key, Err(error));
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Stops the threads once they have finished the jobs they hold; jobs still queued are
    /// failed.
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
        for handle in lock(&self.threads).drain(..) {
            let _ = handle.join();
        }
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

fn run(shared: &Shared) {
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
        for (job, batch) in burst {
            let key = job.key;
            let result = match batch.attrs() {
                Ok(attrs) => catch_unwind(AssertUnwindSafe(|| spawn_one(shared, &job, attrs)))
                    .unwrap_or_else(|_| Err(std::io::Error::other("a panic in the spawner"))),
                Err(e) => Err(e),
            };
            deliver(shared, &batch.reply, key, result);
        }
    }
}

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

/// The listen sockets a worker of `spec` gets (none when its group has none).
fn listen_sockets(
    shared: &Shared,
    spec: &config::GroupSpec,
) -> std::io::Result<Option<Arc<GroupSockets>>> {
    if spec.listen.is_empty() {
        return Ok(None);
    }
    shared
        .listeners
        .as_ref()
        .and_then(|l| l.get(&spec.name))
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "the listen sockets of group '{}' are closed",
                spec.name
            ))
        })
}

/// Spawns one worker process: its listen sockets and control socket, its own environment
/// variables, the spawn. Descriptors 3, 4, ... are the listen sockets, then the control socket,
/// then the exec shim's report descriptor.
fn spawn_one(shared: &Shared, job: &SpawnJob, attrs: &SpawnAttributes) -> std::io::Result<Child> {
    let spec = &job.plan.spec;
    let sockets = listen_sockets(shared, spec)?;
    let listening = sockets.as_ref().map_or(0, |s| s.len()) as i32;
    let listen_pid = listening > 0;
    let extra = shared
        .lifeline
        .as_ref()
        .map_or(0, |l| l.extra_inherited(listen_pid)) as i32;
    // The highest descriptor number the spawn assigns: every source must be above it.
    let last_target = FIRST_INHERITED + listening + extra;
    let listen_fds = match &sockets {
        Some(s) => s.for_worker(last_target + 1)?,
        None => Vec::new(),
    };
    let control_fd = FIRST_INHERITED + listening;
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
    if let Some(s) = &sockets {
        // systemd's socket activation; the exec shim adds LISTEN_PID, the worker's own pid.
        envp.push(config::cstring(&format!("LISTEN_FDS={listening}")));
        envp.push(config::cstring(&format!("LISTEN_FDNAMES={}", s.names())));
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
    let mut inherit: Vec<&std::os::fd::OwnedFd> = listen_fds.iter().chain(theirs.iter()).collect();
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
        inherit: &inherit,
    };
    let pid = spawn::spawn(&cmd, attrs)?;
    // From here on the child is owned: whatever happens, it is killed and reaped or adopted.
    let mut child = Child::new(pid, Instant::now(), clock::now_ms());
    drop(theirs);
    drop(listen_fds);
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
