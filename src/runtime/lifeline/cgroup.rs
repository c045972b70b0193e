//! The workers' cgroups: where this process's own cgroup v2 is writable (root, or a delegated
//! subtree), the supervisor makes `mpsup-<pid>-<n>` beneath it, one cgroup per group beneath that
//! and one per worker process beneath its group's. The exec shim (`shim.rs`) joins a worker to
//! its cgroup before the worker's program runs, so even its first fork is inside. A SIGKILL to a
//! worker also goes to its cgroup's `cgroup.kill`; at its reap the cgroup is killed and removed,
//! on a thread of its own (`Remover`), off the engine's lock.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::os::cgroup;
use crate::sync::lock;
use crate::threads;

/// The cgroups of one supervisor.
pub(super) struct Cgroups {
    dir: PathBuf,
    groups: Mutex<HashSet<String>>,
    next: AtomicU64,
    /// The cgroup of each worker process, by pid (unique among the unreaped).
    placed: Mutex<HashMap<i32, PathBuf>>,
    /// The thread that kills and removes the cgroups of reaped workers, off the engine's lock.
    remover: Mutex<Option<Remover>>,
}

impl Cgroups {
    /// Makes the supervisor's cgroup (`n`: its serial in this process), where the hierarchy
    /// allows; None where it does not.
    pub(super) fn start(n: u64) -> Option<Cgroups> {
        let own = cgroup::own_cgroup_dir()?;
        let dir = own.join(format!("mpsup-{}-{n}", std::process::id()));
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
            placed: Mutex::new(HashMap::new()),
            remover: Mutex::new(None),
        })
    }

    /// The supervisor's cgroup (the keeper kills it when the host dies).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the cgroup of a new worker process of `group` (and the group's, the first time).
    pub(super) fn make_worker_dir(&self, group: &str) -> std::io::Result<PathBuf> {
        let gdir = self.dir.join(group_dir_name(group));
        {
            let mut made = lock(&self.groups);
            if !made.contains(group) {
                cgroup::make(&gdir).map_err(|e| context(e, &gdir))?;
                made.insert(group.to_string());
            }
        }
        let dir = gdir.join(format!("w{}", self.next.fetch_add(1, Ordering::Relaxed)));
        cgroup::make(&dir).map_err(|e| context(e, &dir))?;
        Ok(dir)
    }

    /// Worker `pid` runs in `dir`.
    pub(super) fn placed(&self, pid: i32, dir: PathBuf) {
        lock(&self.placed).insert(pid, dir);
    }

    /// A SIGKILL went to worker `pid`'s process group: its cgroup gets killed too.
    pub(super) fn kill_tree(&self, pid: i32) {
        if let Some(dir) = lock(&self.placed).get(&pid) {
            let _ = cgroup::kill(dir);
        }
    }

    /// Worker `pid` is about to be reaped: its cgroup is killed (what it left behind) and
    /// removed, by the remover thread.
    pub(super) fn reaping(&self, pid: i32) {
        let Some(dir) = lock(&self.placed).remove(&pid) else {
            return;
        };
        let mut remover = lock(&self.remover);
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

    /// At free: the remover finishes, and the cgroups are removed (bounded).
    pub(super) fn close(&self) {
        if let Some(r) = lock(&self.remover).take() {
            drop(r.tx);
            let _ = r.thread.join();
        }
        cgroup::remove_tree(&self.dir, Instant::now() + Duration::from_secs(1));
    }
}

/// A cgroup failure, with the cgroup's path.
pub(super) fn context(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cgroup {}: {e}", path.display()))
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
