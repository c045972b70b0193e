//! The workers' cgroups: where this process's own cgroup v2 is writable (root, or a delegated
//! subtree), the supervisor makes `mpsup-<pid>-<n>` beneath it, one cgroup per group beneath that
//! and one per worker process beneath its group's. A group with limits gets the same three
//! levels in each hierarchy that holds one of its controllers (`limits.rs`), whatever the
//! `cgroup` option says. A worker is in its cgroups before its program runs, so even its first
//! fork is inside: born in its cgroup v2 by the spawn (`os::born_in`) or by the exec shim
//! (`shim.rs`), which also joins the v1 cgroups of its limits. A SIGKILL to a worker also goes to
//! its cgroups (`cgroup.kill`, or each process of a v1 cgroup); at its reap they are killed and
//! removed, on a thread of its own (`Remover`), off the engine's lock.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::limits::{self, Controllers, Setting};
use crate::config::Limits;
use crate::os::cgroup;
use crate::status::LimitsMechanism;
use crate::sync::lock;
use crate::threads;

/// The cgroups of one supervisor.
pub(super) struct Cgroups {
    /// The supervisor's cgroup v2 for tree kill, when asked for and writable.
    tree: Option<PathBuf>,
    /// Workers are moved into their cgroup v2 rather than born there (`born_in`).
    by_move: bool,
    /// The supervisor's cgroup's name in every hierarchy, `mpsup-<pid>-<n>`.
    name: String,
    /// Where the limits' controllers are.
    controllers: Controllers,
    /// The group cgroups made so far (in every hierarchy).
    groups: Mutex<HashSet<PathBuf>>,
    /// The supervisor's cgroups made for limits, in hierarchies other than `tree`'s.
    others: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
    /// The cgroups of each worker process, by pid (unique among the unreaped).
    placed: Mutex<HashMap<i32, Vec<PathBuf>>>,
    /// The thread that kills and removes the cgroups of reaped workers, off the engine's lock.
    remover: Mutex<Option<Remover>>,
    /// Cgroups whose removal a stopped remover had not finished (a handover): the next
    /// remover tries them again, and `close` removes whatever is left.
    leftover: Mutex<Vec<PathBuf>>,
}

/// The cgroups of one supervisor as they cross an `exec` of the host (`handover`): all by
/// path, since a cgroup is no descriptor. The keeper (same pid) knows the supervisor's by name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CgroupsState {
    pub name: String,
    pub tree: Option<PathBuf>,
    /// Workers move into their cgroup (`MPSUP_CGROUP=move`, for `bench/`) instead of being
    /// born there.
    #[serde(default)]
    pub by_move: bool,
    /// The group cgroups made so far (in every hierarchy).
    pub groups: Vec<PathBuf>,
    /// The supervisor's cgroups made for limits, in hierarchies other than `tree`'s.
    pub others: Vec<PathBuf>,
    /// The serial of the next worker cgroup (`w<n>`): a new one never takes a live one's name.
    pub next: u64,
    /// Each unreaped worker process's cgroups.
    pub placed: Vec<(i32, Vec<PathBuf>)>,
    /// Cgroups of reaped workers not removed yet.
    pub removing: Vec<PathBuf>,
}

impl Cgroups {
    /// The cgroups of supervisor `n` (its serial in this process): with `tree`, its cgroup v2
    /// where the hierarchy allows (every worker is placed there); the limits' hierarchies are
    /// found now and their cgroups made when a group with limits starts.
    pub(super) fn start(n: u64, tree: bool, by_move: bool) -> Cgroups {
        let name = format!("mpsup-{}-{n}", std::process::id());
        let tree = tree.then(|| make_tree(&name)).flatten();
        Cgroups::resume(CgroupsState {
            name,
            tree,
            by_move,
            groups: Vec::new(),
            others: Vec::new(),
            next: 0,
            placed: Vec::new(),
            removing: Vec::new(),
        })
    }

    /// The same cgroups in the next image of the host (`handover`): every worker's cgroups
    /// still known by its pid (a forced kill reaches them, its reap removes them, its OOM kill
    /// is read from them), the limits already written in them; the keeper knows the
    /// supervisor's by name.
    pub(super) fn resume(s: CgroupsState) -> Cgroups {
        Cgroups {
            tree: s.tree,
            by_move: s.by_move,
            name: s.name,
            controllers: Controllers::find(),
            groups: Mutex::new(s.groups.into_iter().collect()),
            others: Mutex::new(s.others),
            next: AtomicU64::new(s.next),
            placed: Mutex::new(s.placed.into_iter().collect()),
            remover: Mutex::new(None),
            leftover: Mutex::new(s.removing),
        }
    }

    /// Everything `resume` needs. The remover is stopped first (what it had not removed yet
    /// is carried); with the reaper stopped, nothing starts it again before the `exec`, and
    /// after an aborted handover the next reap does.
    pub(super) fn export(&self) -> CgroupsState {
        if let Some(r) = lock(&self.remover).take() {
            drop(r.tx);
            let left = r.thread.join().unwrap_or_default();
            lock(&self.leftover).extend(left);
        }
        let mut placed: Vec<(i32, Vec<PathBuf>)> = lock(&self.placed)
            .iter()
            .map(|(&pid, dirs)| (pid, dirs.clone()))
            .collect();
        placed.sort();
        let mut groups: Vec<PathBuf> = lock(&self.groups).iter().cloned().collect();
        groups.sort();
        CgroupsState {
            name: self.name.clone(),
            tree: self.tree.clone(),
            by_move: self.by_move,
            groups,
            others: lock(&self.others).clone(),
            next: self.next.load(Ordering::Relaxed),
            placed,
            removing: lock(&self.leftover).clone(),
        }
    }

    /// The supervisor's cgroup v2 for tree kill (the keeper kills it when the host dies).
    pub(super) fn tree(&self) -> Option<&Path> {
        self.tree.as_deref()
    }

    /// The supervisor's cgroup in every hierarchy it may use (the tree's first), for the keeper
    /// to kill and remove when the host dies; those of the limits are made only when a group
    /// with limits starts.
    pub(super) fn keeper_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.tree.iter().cloned().collect();
        for place in self.controllers.places() {
            let dir = place.dir().join(&self.name);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// What `guarantees.limits` says.
    pub(super) fn mechanism(&self) -> LimitsMechanism {
        self.controllers.mechanism()
    }

    /// Whether `limits` can be had: their cgroups for `group` are made now. Err: the key that
    /// cannot, and why.
    pub(super) fn check(&self, group: &str, limits: &Limits) -> Result<(), (String, String)> {
        for setting in self.controllers.files(limits)? {
            self.group_dir(group, &setting)
                .map_err(|e| (setting.keys[0].to_string(), e.to_string()))?;
        }
        Ok(())
    }

    /// The cgroup of `group` in the hierarchy of `setting`, made the first time (with the
    /// supervisor's, and in v2 the controllers enabled down to it).
    fn group_dir(&self, group: &str, setting: &Setting) -> std::io::Result<PathBuf> {
        let own = setting.place.dir();
        let sup = own.join(&self.name);
        let gdir = sup.join(group_dir_name(group));
        let mut made = lock(&self.groups);
        if made.contains(&gdir) {
            return Ok(gdir);
        }
        if let cgroup::Place::V2(_) = setting.place {
            limits::enable(own, &setting.controllers)?;
        }
        limits::make_level(&sup, &setting.place, &setting.controllers)?;
        {
            let mut others = lock(&self.others);
            if self.tree.as_deref() != Some(&sup) && !others.contains(&sup) {
                others.push(sup.clone());
            }
        }
        limits::make_level(&gdir, &setting.place, &setting.controllers)?;
        made.insert(gdir.clone());
        Ok(gdir)
    }

    /// Makes the cgroups of a new worker process of `group`: its tree cgroup, and one in each
    /// hierarchy its limits need, with their files written.
    pub(super) fn make_worker_dirs(
        &self,
        group: &str,
        limits: &Limits,
    ) -> std::io::Result<Vec<PathBuf>> {
        let leaf = format!("w{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut dirs: Vec<PathBuf> = Vec::new();
        let made = self.make_worker_dirs_into(group, limits, &leaf, &mut dirs);
        if made.is_err() {
            super::remove_dirs(&dirs);
        }
        made.map(|()| dirs)
    }

    fn make_worker_dirs_into(
        &self,
        group: &str,
        limits: &Limits,
        leaf: &str,
        dirs: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let settings = self.controllers.files(limits).map_err(|(key, why)| {
            std::io::Error::new(std::io::ErrorKind::Unsupported, format!("{key}: {why}"))
        })?;
        for setting in &settings {
            let dir = self.group_dir(group, setting)?.join(leaf);
            cgroup::make(&dir).map_err(|e| cgroup::error_at(e, &dir))?;
            dirs.push(dir.clone());
            limits::write_files(&dir, &setting.files)?;
        }
        if let Some(tree) = &self.tree {
            let gdir = tree.join(group_dir_name(group));
            let dir = gdir.join(leaf);
            if !dirs.contains(&dir) {
                {
                    let mut made = lock(&self.groups);
                    if !made.contains(&gdir) {
                        cgroup::make(&gdir).map_err(|e| cgroup::error_at(e, &gdir))?;
                        made.insert(gdir);
                    }
                }
                cgroup::make(&dir).map_err(|e| cgroup::error_at(e, &dir))?;
                dirs.push(dir);
            }
        }
        Ok(())
    }

    /// Which of a worker's cgroups (`make_worker_dirs`) it is born in rather than moved to: its
    /// cgroup v2 (`CLONE_INTO_CGROUP` takes no v1 cgroup).
    pub(super) fn born_in(&self, dirs: &[PathBuf]) -> Option<usize> {
        let tree = self.tree.as_ref().filter(|_| !self.by_move)?;
        dirs.iter().position(|d| d.starts_with(tree))
    }

    /// Worker `pid` runs in `dirs`.
    pub(super) fn placed(&self, pid: i32, dirs: Vec<PathBuf>) {
        if !dirs.is_empty() {
            lock(&self.placed).insert(pid, dirs);
        }
    }

    /// A SIGKILL went to worker `pid`'s process group: its cgroups get killed too.
    pub(super) fn kill_tree(&self, pid: i32) {
        if let Some(dirs) = lock(&self.placed).get(&pid) {
            for dir in dirs {
                let _ = cgroup::kill(dir);
            }
        }
    }

    /// Worker `pid` is about to be reaped: whether the OOM killer killed in its cgroups (read
    /// now, before they go); its cgroups are killed (what it left behind) and removed, by the
    /// remover thread.
    pub(super) fn reaping(&self, pid: i32) -> bool {
        let Some(dirs) = lock(&self.placed).remove(&pid) else {
            return false;
        };
        // Only a cgroup of the memory controller's hierarchy can count OOM kills.
        let memory = self.controllers.memory_dir();
        let oom = dirs
            .iter()
            .filter(|d| memory.is_some_and(|m| d.starts_with(m)))
            .any(|d| cgroup::oom_kills(d) > 0);
        let mut remover = lock(&self.remover);
        if remover.is_none() {
            *remover = Remover::start();
            // What a remover stopped at a handover had not removed yet.
            let left = std::mem::take(&mut *lock(&self.leftover));
            if let (Some(r), false) = (remover.as_ref(), left.is_empty()) {
                let _ = r.tx.send(left);
            }
        }
        let dirs = match remover.as_ref() {
            Some(r) => match r.tx.send(dirs) {
                Ok(()) => return oom,
                Err(mpsc::SendError(dirs)) => dirs,
            },
            None => dirs,
        };
        for dir in dirs {
            let _ = cgroup::kill(&dir);
            let _ = std::fs::remove_dir(&dir);
        }
        oom
    }

    /// At free: the remover finishes, and the cgroups are removed (bounded).
    pub(super) fn close(&self) {
        if let Some(r) = lock(&self.remover).take() {
            drop(r.tx);
            let _ = r.thread.join();
        }
        let until = Instant::now() + Duration::from_secs(1);
        for dir in lock(&self.leftover).drain(..) {
            let _ = cgroup::kill(&dir);
            let _ = std::fs::remove_dir(&dir);
        }
        for dir in self.tree.iter().chain(lock(&self.others).iter()) {
            cgroup::remove_tree(dir, until);
        }
    }
}

/// Makes the supervisor's cgroup v2 for tree kill, where the hierarchy allows and has
/// `cgroup.kill`.
fn make_tree(name: &str) -> Option<PathBuf> {
    let dir = cgroup::own_cgroup_dir()?.join(name);
    if cgroup::make(&dir).is_err() {
        return None;
    }
    if !dir.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&dir);
        return None;
    }
    Some(dir)
}

/// Kills and removes the cgroups of reaped workers (what they left behind dies with them). A
/// cgroup whose processes are still dying is tried again for up to a second; what is left then
/// goes at `close`.
struct Remover {
    tx: mpsc::Sender<Vec<PathBuf>>,
    /// Returns the cgroups it had not removed when it was told to stop (every one sent to it
    /// was tried first).
    thread: std::thread::JoinHandle<Vec<PathBuf>>,
}

impl Remover {
    fn start() -> Option<Remover> {
        let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
        let thread = threads::spawn_named("mpsup-cgroups", Some(64 * 1024), move || {
            // It opens cgroup files while the host runs, maybe with its stdout closed for a
            // moment: in a table of its own, none of its descriptors ever takes 0, 1 or 2.
            crate::os::passing::enter_private_table(&[]);
            let mut busy: Vec<(PathBuf, Instant)> = Vec::new();
            loop {
                let next = if busy.is_empty() {
                    rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(Duration::from_millis(10))
                };
                match next {
                    Ok(dirs) => {
                        for dir in dirs {
                            // A cgroup whose worker exited and left nothing behind is empty
                            // (a zombie does not count) and goes at once; else what is left
                            // is killed and the removal tried again.
                            if std::fs::remove_dir(&dir).is_err() {
                                let _ = cgroup::kill(&dir);
                                busy.push((dir, Instant::now() + Duration::from_secs(1)));
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return busy.into_iter().map(|(dir, _)| dir).collect();
                    }
                }
                let now = Instant::now();
                busy.retain(|(dir, until)| {
                    // A v1 cgroup is killed process by process: one forked meanwhile dies now.
                    let _ = cgroup::kill(dir);
                    std::fs::remove_dir(dir).is_err() && *until > now
                });
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
