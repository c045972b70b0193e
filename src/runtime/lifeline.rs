//! What kills the workers when the host cannot: the keeper process, which outlives a host that
//! dies and then kills every worker's process group and cgroup, and the cgroups themselves,
//! which reach descendants that left their process group.
//!
//! The keeper process itself is started and spoken to in `keeper.rs`.
//!
//! Cgroups: where this process's own cgroup v2 is writable (root, or a delegated subtree), the
//! supervisor makes `mpsup-<pid>-<n>` beneath it, one cgroup per group beneath that and one per
//! worker process beneath its group's. Each worker is spawned through the exec shim
//! (`mpsup-exec`), which joins its cgroup before the worker's program runs, so even its first
//! fork is inside. A SIGKILL to a worker also goes to its cgroup's `cgroup.kill`; at its reap the
//! cgroup is killed and removed.

use crate::status::{HostDeath, TreeKill};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::os::spawn::{self};
use crate::os::{self, cgroup, ChildState};
use crate::runtime::helpers::find_helper;
use crate::runtime::keeper::{send_bounded, start_keeper, wait_exit, Keeper, KEEPER_BOUND};
use crate::sync::lock;
use crate::threads;

/// The keeper's file name, next to the library (or in `mpsupervisor/` next to it).
pub const KEEPER_NAME: &str = "mpsup-keeper";
/// The exec shim's file name, found like the keeper.
pub const SHIM_NAME: &str = "mpsup-exec";
/// How long the spawner waits for the shim to exec the worker (only a child the host forked
/// meanwhile, holding the pipe's write end, can make it wait that long).
const SHIM_BOUND: Duration = Duration::from_secs(1);
/// The most pids in one `D` message: the keeper reads datagrams of up to 512 bytes.
const REAPED_PER_MESSAGE: usize = 50;

/// What the host asked for (from `Options`).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub keeper: bool,
    /// The keeper program to run; None: looked up next to the library.
    pub keeper_path: Option<PathBuf>,
    pub cgroup: bool,
}

struct Cgroups {
    dir: PathBuf,
    groups: Mutex<HashSet<String>>,
    next: AtomicU64,
    /// The thread that kills and removes the cgroups of reaped workers, off the engine's lock.
    remover: Mutex<Option<Remover>>,
}

/// A worker's spawn through the exec shim: what to spawn instead, and the report pipe.
pub struct Placement {
    pub program: CString,
    pub argv: Vec<CString>,
    /// The shim's report descriptor: the spawn passes it as its last inherited descriptor.
    pub report: Option<OwnedFd>,
    read: Option<OwnedFd>,
    /// The worker's own cgroup, when cgroups are in force.
    dir: Option<PathBuf>,
    for_program: CString,
}

/// The keeper and the cgroups of one supervisor. Nothing here runs at drop: a child the host
/// forked drops its copy, and must not touch the parent's keeper or cgroups; `close` does it.
pub struct Lifeline {
    keeper: Option<Keeper>,
    cgroups: Option<Cgroups>,
    /// The exec shim: joins a worker's cgroup and sets `LISTEN_PID` before the worker runs.
    shim: Option<CString>,
    /// The cgroup of each worker process, by pid (unique among the unreaped).
    placed: Mutex<HashMap<i32, PathBuf>>,
    /// Reaped workers whose `D` has not gone to the keeper yet.
    reaped: Mutex<Vec<i32>>,
    closed: AtomicBool,
}

impl Lifeline {
    /// Starts what `wanted` asks for and this host allows; what cannot be had is simply absent.
    pub fn start(wanted: &Wanted) -> Lifeline {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let me = std::process::id();
        let shim = find_helper(SHIM_NAME)
            .and_then(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok());
        let cgroups = if wanted.cgroup {
            shim.as_ref().and(cgroup::own_cgroup_dir()).and_then(|own| {
                let dir = own.join(format!("mpsup-{me}-{n}"));
                if cgroup::make(&dir).is_err() {
                    return None;
                }
                if !dir.join("cgroup.kill").exists() {
                    let _ = std::fs::remove_dir(&dir);
                    return None;
                }
                Some(Cgroups {
                    dir,
                    groups: Mutex::new(HashSet::new()),
                    next: AtomicU64::new(0),
                    remover: Mutex::new(None),
                })
            })
        } else {
            None
        };
        // Without one (not found, not runnable), `host_death` says "none".
        let keeper = if wanted.keeper {
            wanted
                .keeper_path
                .clone()
                .or_else(|| find_helper(KEEPER_NAME))
                .and_then(|p| start_keeper(&p, cgroups.as_ref().map(|c| c.dir.as_path())).ok())
        } else {
            None
        };
        Lifeline {
            keeper,
            cgroups,
            shim,
            placed: Mutex::new(HashMap::new()),
            reaped: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// `"keeper"` while the keeper runs, else `"none"`.
    pub fn host_death(&self) -> HostDeath {
        match &self.keeper {
            Some(k) if k.alive.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire) => {
                if matches!(os::peek_exit(k.pid), ChildState::Running) {
                    HostDeath::Keeper
                } else {
                    k.alive.store(false, Ordering::Release);
                    HostDeath::None
                }
            }
            _ => HostDeath::None,
        }
    }

    /// `"cgroup"` where workers get cgroups, else `"process_group"`.
    pub fn tree_kill(&self) -> TreeKill {
        if self.cgroups.is_some() {
            TreeKill::Cgroup
        } else {
            TreeKill::ProcessGroup
        }
    }

    /// Whether the exec shim was found (listen sockets need it for `LISTEN_PID`).
    pub fn has_shim(&self) -> bool {
        self.shim.is_some()
    }

    /// The descriptors that `spawned` uses (the keeper's socket): a spawner thread with a
    /// descriptor table of its own keeps them.
    pub fn spawner_descriptors(&self) -> Vec<std::os::fd::RawFd> {
        self.keeper.iter().map(|k| k.sock.as_raw_fd()).collect()
    }

    /// How many more descriptors a spawn inherits (the shim's report pipe): 0 or 1.
    /// `listen_pid`: the worker needs `LISTEN_PID` (it has listen sockets).
    pub fn extra_inherited(&self, listen_pid: bool) -> usize {
        usize::from(self.cgroups.is_some() || listen_pid)
    }

    /// Before a worker's spawn, where cgroups are in force or the worker needs `LISTEN_PID`:
    /// makes its cgroup (one per worker process, under its group's) and the command that runs
    /// the exec shim, which joins it, sets `LISTEN_PID` when the environment asks, and then
    /// execs the worker. `inherited`: how many descriptors the spawn passes before the shim's
    /// (its report descriptor is the next one).
    pub fn prepare(
        &self,
        group: &str,
        program: &CStr,
        argv: &[CString],
        inherited: usize,
        listen_pid: bool,
    ) -> std::io::Result<Option<Placement>> {
        if self.cgroups.is_none() && !listen_pid {
            return Ok(None);
        }
        let shim = self.shim.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("listen sockets need the {SHIM_NAME} helper next to the library"),
            )
        })?;
        let dir = match &self.cgroups {
            Some(c) => {
                let gdir = c.dir.join(group_dir_name(group));
                {
                    let mut made = lock(&c.groups);
                    if !made.contains(group) {
                        cgroup::make(&gdir).map_err(|e| context(e, &gdir))?;
                        made.insert(group.to_string());
                    }
                }
                let dir = gdir.join(format!("w{}", c.next.fetch_add(1, Ordering::Relaxed)));
                cgroup::make(&dir).map_err(|e| context(e, &dir))?;
                Some(dir)
            }
            None => None,
        };
        // Without descriptors to spare (EMFILE), the shim runs without its report: an exec
        // failure is then the worker's exit (127) instead of the spawn's error.
        let target = spawn::FIRST_INHERITED + inherited as i32;
        let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|(read, write)| {
                Ok((
                    os::above_stdio(read)?,
                    os::dup_at_least(&write, target + 1)?,
                ))
            })
            .ok();
        let report_arg = if pipe.is_some() {
            target.to_string()
        } else {
            "-".to_string()
        };
        let (read, report) = pipe.unzip();
        // "-": no cgroup to join.
        let dir_arg = dir
            .as_ref()
            .map_or_else(|| "-".to_string(), |d| d.to_string_lossy().into_owned());
        let mut shim_argv = vec![
            shim.clone(),
            crate::config::cstring(&report_arg),
            crate::config::cstring(&dir_arg),
            program.to_owned(),
        ];
        shim_argv.extend(argv.iter().cloned());
        Ok(Some(Placement {
            program: shim.clone(),
            argv: shim_argv,
            report,
            read,
            dir,
            for_program: program.to_owned(),
        }))
    }

    /// A worker process was just spawned (not handed over yet, so not reaped). With a placement:
    /// waits until the shim has joined the cgroup and exec'd the worker; its failure is the
    /// spawn's. Then tells the keeper.
    pub fn spawned(
        &self,
        placement: Option<Placement>,
        pid: i32,
        pidfd: Option<&OwnedFd>,
    ) -> std::io::Result<()> {
        if let Some(p) = placement {
            drop(p.report);
            let mut buf = [0u8; 5];
            let n = match &p.read {
                Some(read) => {
                    let mut fds = [PollFd::new(
                        std::os::fd::AsFd::as_fd(read),
                        PollFlags::POLLIN,
                    )];
                    match poll(&mut fds, PollTimeout::from(SHIM_BOUND.as_millis() as u16)) {
                        Ok(1..) => nix::unistd::read(read, &mut buf).unwrap_or(0),
                        _ => 0,
                    }
                }
                None => 0,
            };
            if n == buf.len() {
                // The caller's `Child` kills and reaps the shim, which is exiting.
                let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
                let err = std::io::Error::from_raw_os_error(errno);
                if let Some(dir) = &p.dir {
                    let _ = std::fs::remove_dir(dir);
                    if buf[0] == b'C' {
                        return Err(context(err, &dir.join("cgroup.procs")));
                    }
                }
                return Err(std::io::Error::new(
                    err.kind(),
                    format!("posix_spawn {}: {err}", p.for_program.to_string_lossy()),
                ));
            }
            if let Some(dir) = p.dir {
                lock(&self.placed).insert(pid, dir);
            }
        }
        if let Some(k) = &self.keeper {
            {
                let mut reaped = lock(&self.reaped);
                if reaped.contains(&pid) {
                    // A reaped worker's pid, reused already: its D goes first.
                    self.send_reaped(k, &mut reaped);
                }
            }
            self.tell(k, &format!("A {pid}"), pidfd);
        }
        Ok(())
    }

    /// A SIGKILL went to worker `pid`'s process group: its cgroup gets killed too.
    pub fn kill_tree(&self, pid: i32) {
        if let Some(dir) = lock(&self.placed).get(&pid) {
            let _ = cgroup::kill(dir);
        }
    }

    /// Worker `pid` has exited and is about to be reaped: the keeper forgets it, its cgroup is
    /// killed (what it left behind) and removed. `keeper_has_pidfd`: the keeper got the host's
    /// pidfd of it with its `A`; it can then never mistake a reused pid for it (a reaped worker's
    /// pidfd signals nothing), so its `D` waits to go with others in one message, which spares the
    /// keeper a wake-up per reap: when `REAPED_PER_MESSAGE` wait, before an `A` that reuses one of
    /// their pids, and at `close`. Meanwhile the keeper holds a few pidfds of reaped workers.
    /// Without a pidfd the keeper opened its own from the pid, which is the worker's only until
    /// the reap: the `D` goes now.
    pub fn reaping(&self, pid: i32, keeper_has_pidfd: bool) {
        if let Some(k) = &self.keeper {
            if keeper_has_pidfd && k.alive.load(Ordering::Acquire) {
                let full = {
                    let mut reaped = lock(&self.reaped);
                    reaped.push(pid);
                    reaped.len() >= REAPED_PER_MESSAGE
                };
                if full {
                    self.flush_reaped();
                }
            } else {
                self.tell(k, &format!("D {pid}"), None);
            }
        }
        let Some(c) = &self.cgroups else {
            return;
        };
        let Some(dir) = lock(&self.placed).remove(&pid) else {
            return;
        };
        let mut remover = lock(&c.remover);
        if remover.is_none() {
            *remover = Remover::start();
        }
        match remover.as_ref() {
            Some(r) if r.tx.send(dir.clone()).is_ok() => {}
            _ => {
                let _ = cgroup::kill(&dir);
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    /// Tells the keeper of the reaped workers whose `D` waits.
    fn flush_reaped(&self) {
        if let Some(k) = &self.keeper {
            self.send_reaped(k, &mut lock(&self.reaped));
        }
    }

    /// Sends the waiting `D`s, under the lock of their list: a spawn that reuses one of their
    /// pids (`spawned`) sends its `A` only after them, or the keeper would forget the new worker.
    fn send_reaped(&self, k: &Keeper, reaped: &mut Vec<i32>) {
        if reaped.is_empty() {
            return;
        }
        let mut text = String::from("D");
        for pid in reaped.drain(..) {
            text.push_str(&format!(" {pid}"));
        }
        self.tell(k, &text, None);
    }

    fn tell(&self, k: &Keeper, text: &str, fd: Option<&OwnedFd>) {
        if !k.alive.load(Ordering::Acquire) {
            return;
        }
        if send_bounded(&k.sock, text.as_bytes(), fd).is_err() {
            // It does not take messages: it can no longer keep its promise, and must not act
            // on an outdated list. Ours and unreaped, so its pid is its own.
            k.alive.store(false, Ordering::Release);
            let _ = os::kill_pid(k.pid, libc::SIGKILL);
        }
    }

    /// At free, once every worker is reaped: the keeper is told to exit and is reaped, the
    /// cgroups are removed (bounded). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.flush_reaped();
        if let Some(k) = &self.keeper {
            if k.alive.load(Ordering::Acquire) {
                let _ = send_bounded(&k.sock, b"Q", None);
            }
            wait_exit(k, Instant::now() + KEEPER_BOUND);
        }
        if let Some(c) = &self.cgroups {
            if let Some(r) = lock(&c.remover).take() {
                drop(r.tx);
                let _ = r.thread.join();
            }
            cgroup::remove_tree(&c.dir, Instant::now() + Duration::from_secs(1));
        }
    }
}

/// Kills and removes the cgroups of reaped workers (what they left behind dies with them). A
/// cgroup whose processes are still dying is tried again for up to a second; what is left then
/// goes at `close`.
struct Remover {
    tx: mpsc::Sender<PathBuf>,
    thread: std::thread::JoinHandle<()>,
}

impl Remover {
    fn start() -> Option<Remover> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let thread = threads::spawn_named("mpsup-cgroups", Some(64 * 1024), move || {
            let mut busy: Vec<(PathBuf, Instant)> = Vec::new();
            loop {
                let next = if busy.is_empty() {
                    rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(Duration::from_millis(10))
                };
                match next {
                    Ok(dir) => {
                        let _ = cgroup::kill(&dir);
                        if std::fs::remove_dir(&dir).is_err() {
                            busy.push((dir, Instant::now() + Duration::from_secs(1)));
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                busy.retain(|(dir, until)| std::fs::remove_dir(dir).is_err() && *until > now);
            }
        })
        .ok()?;
        Some(Remover { tx, thread })
    }
}

fn context(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cgroup {}: {e}", path.display()))
}

/// A group's name as a cgroup directory name: only `[A-Za-z0-9_.-]` kept, never a name the
/// kernel reserves (`cgroup.*`, controller files).
fn group_dir_name(group: &str) -> String {
    let safe: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    format!("g-{safe}")
}

#[cfg(test)]
mod tests {
    use super::group_dir_name;

    #[test]
    fn group_names_become_safe_directory_names() {
        assert_eq!(group_dir_name("web"), "g-web");
        assert_eq!(group_dir_name("a/b c"), "g-a_b_c");
        assert_eq!(group_dir_name("cgroup.procs"), "g-cgroup_procs");
    }
}
