//! What kills the workers when the host cannot, one idea a module:
//! - `keeper.rs`: the keeper process, which outlives a host that dies and then kills every
//!   worker's process group and cgroup;
//! - `cgroup.rs`: the workers' cgroups, which reach descendants that left their process group,
//!   and the thread that removes them;
//! - `shim.rs`: the exec shim, which places a worker in its cgroups (and sets `LISTEN_PID` and
//!   process attributes) before its program runs, where the spawn itself cannot start it in its
//!   cgroup (`os::born_in`: a worker whose only cgroup is its cgroup v2 and that needs nothing
//!   else of the shim);
//! - `helpers.rs`: finding the keeper and the shim next to the library.
//!
//! `Lifeline` holds the three together for the rest of the runtime, and says which guarantees
//! are in force (`HostDeath`, `TreeKill`).

mod cgroup;
mod helpers;
mod keeper;
mod limits;
mod shim;

use crate::config::GroupSpec;
pub use crate::status::{HostDeath, LimitsMechanism, TreeKill};
use std::ffi::{CStr, CString};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::core::plan::Attributes;
use crate::os::spawn::ChildFds;
use crate::runtime::child::Child;

use cgroup::Cgroups;
pub use cgroup::CgroupsState;
use helpers::find_helper;
use keeper::{KeeperLink, KEEPER_NAME};
use shim::Shim;
use shim::ShimPlacement;
pub use shim::SHIM_NAME;

/// What crosses an `exec` of the host (`handover`): the keeper's pid and socket number, and the
/// supervisor's cgroups with every worker's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LifelineState {
    pub keeper: Option<(i32, RawFd)>,
    pub cgroups: Option<CgroupsState>,
}

/// What the host asked for (from `Options`).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub keeper: bool,
    /// The keeper program to run; None: looked up next to the library.
    pub keeper_path: Option<PathBuf>,
    pub cgroup: bool,
    /// Workers are moved into their cgroup v2 instead of born there (`bench/` compares them).
    pub cgroup_by_move: bool,
}

/// The keeper, the cgroups and the exec shim of one supervisor. Nothing here runs at drop: a
/// child the host forked drops its copy, and must not touch the parent's keeper or cgroups;
/// `close` does it.
pub struct Lifeline {
    keeper: Option<KeeperLink>,
    cgroups: Option<Cgroups>,
    shim: Option<Shim>,
    closed: AtomicBool,
}

impl Lifeline {
    /// Starts what `wanted` asks for and this host allows; what cannot be had is simply absent.
    pub fn start(wanted: &Wanted) -> Lifeline {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let shim = Shim::find();
        // Only where workers can be placed in them: by the shim, or born there by the spawn.
        let cgroups =
            placeable(&shim).then(|| Cgroups::start(n, wanted.cgroup, wanted.cgroup_by_move));
        // Without one (not found, not runnable), `host_death` says "none".
        let keeper = if wanted.keeper {
            wanted
                .keeper_path
                .clone()
                .or_else(|| find_helper(KEEPER_NAME))
                .and_then(|p| {
                    let dirs = cgroups
                        .as_ref()
                        .map(Cgroups::keeper_dirs)
                        .unwrap_or_default();
                    KeeperLink::start(&p, &dirs).ok()
                })
        } else {
            None
        };
        Lifeline {
            keeper,
            cgroups,
            shim,
            closed: AtomicBool::new(false),
        }
    }

    /// The lifeline of the previous image of the host (`handover`): the same keeper and
    /// cgroups (the workers' among them), the shim found again.
    pub fn resume(state: LifelineState, keeper_sock: Option<OwnedFd>) -> Lifeline {
        let keeper = state
            .keeper
            .zip(keeper_sock)
            .map(|((pid, _), sock)| KeeperLink::resume(pid, sock));
        let shim = Shim::find();
        let cgroups = state
            .cgroups
            .filter(|_| placeable(&shim))
            .map(Cgroups::resume);
        Lifeline {
            keeper,
            cgroups,
            shim,
            closed: AtomicBool::new(false),
        }
    }

    /// What the next image needs to `resume` (with the reaper stopped: no cgroup is removed
    /// meanwhile).
    pub fn export(&self) -> LifelineState {
        let cgroups = self.cgroups.as_ref().map(Cgroups::export);
        let keeper = self
            .keeper
            .as_ref()
            .filter(|k| k.alive())
            .map(KeeperLink::export);
        LifelineState { keeper, cgroups }
    }

    pub fn host_death(&self) -> HostDeath {
        match &self.keeper {
            Some(k) if !self.closed.load(Ordering::Acquire) && k.alive() => HostDeath::Keeper,
            _ => HostDeath::None,
        }
    }

    pub fn tree_kill(&self) -> TreeKill {
        if self.cgroups.as_ref().is_some_and(|c| c.tree().is_some()) {
            TreeKill::Cgroup
        } else {
            TreeKill::ProcessGroup
        }
    }

    /// Which cgroups hold the groups' limits (none without the shim, which places workers).
    pub fn limits(&self) -> LimitsMechanism {
        self.cgroups
            .as_ref()
            .map_or(LimitsMechanism::None, Cgroups::mechanism)
    }

    /// Whether the limits of every group of `specs` can be enforced here (their cgroups are
    /// made now). Err: the message of `Error::Unsupported`, naming the group, the key and why.
    pub fn check_limits(&self, specs: &[GroupSpec]) -> Result<(), String> {
        for spec in specs.iter().filter(|s| !s.limits().is_empty()) {
            let unsupported = |key: &str, why: String| {
                format!("group '{}': {key}: cannot be enforced: {why}", spec.name)
            };
            let Some(c) = self.cgroups.as_ref().filter(|_| self.shim.is_some()) else {
                return Err(unsupported(
                    first_key(spec),
                    format!("the {SHIM_NAME} helper, which places workers in cgroups, is missing"),
                ));
            };
            c.check(&spec.name, &spec.limits())
                .map_err(|(key, why)| unsupported(&key, why))?;
        }
        Ok(())
    }

    /// Whether the exec shim was found (listen sockets need it for `LISTEN_PID`).
    pub fn has_shim(&self) -> bool {
        self.shim.is_some()
    }

    /// The descriptors that `spawned` uses (the keeper's socket): a spawner thread with a
    /// descriptor table of its own keeps them.
    pub fn spawner_descriptors(&self) -> Vec<RawFd> {
        self.keeper.iter().map(KeeperLink::socket).collect()
    }

    /// Whether a spawn needs the exec shim for more than its cgroup v2: its group has limits
    /// (cgroups of other hierarchies to join), the worker needs `LISTEN_PID` (it has listen
    /// sockets) or `{pid}` in its environment, or its group sets process attributes (identity,
    /// umask, rlimits).
    fn needs_shim(&self, spec: &GroupSpec, fds: &ChildFds<'_>, attrs: &Attributes) -> bool {
        !spec.limits().is_empty()
            || !fds.listen.is_empty()
            || attrs.first_key().is_some()
            || spec.env.values().any(|v| v.contains("{pid}"))
    }

    /// Before a worker's spawn: makes its cgroups (one per worker process, under its group's,
    /// in each hierarchy it needs, with its limits written), and says how it is placed in them
    /// and given what else it needs. None: a plain spawn. `Born`: where the worker's only
    /// cgroup is its cgroup v2 and it needs nothing else of the shim, the spawn itself makes it
    /// there (`os::born_in`). `Shim`: the command that runs the exec shim, which joins the
    /// cgroups, sets `attrs` and `LISTEN_PID` when the environment asks, then execs the worker;
    /// it reports on the descriptor that `fds` has for it (`ChildFds::report_fd`), where the
    /// placement's report pipe goes.
    pub fn prepare(
        &self,
        spec: &GroupSpec,
        program: &CStr,
        argv: &[CString],
        fds: &ChildFds<'_>,
        attrs: &Attributes,
    ) -> std::io::Result<Option<Placement>> {
        let tree = self.cgroups.as_ref().and_then(|c| c.tree());
        let needs_shim = self.needs_shim(spec, fds, attrs);
        if tree.is_none() && !needs_shim {
            return Ok(None);
        }
        let (dirs, born) = match &self.cgroups {
            Some(c) => {
                let dirs = c.make_worker_dirs(&spec.name, &spec.limits())?;
                let born = c.born_in(&dirs);
                (dirs, born)
            }
            None => (Vec::new(), None),
        };
        if let (false, [dir], Some(0), true) =
            (needs_shim, &dirs[..], born, crate::os::born_in::available())
        {
            // Without a descriptor to spare for it (EMFILE), the shim places the worker.
            if let Ok(cgroup) = crate::os::open_dir(dir) {
                return Ok(Some(Placement::Born(Born { cgroup, dirs })));
            }
        }
        let Some(shim) = &self.shim else {
            remove_dirs(&dirs);
            if !needs_shim {
                // Not born in its cgroup this time (no descriptor to spare, or the kernel
                // refused), and no shim to place it: the worker runs without, in its process
                // group.
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("this worker needs the {SHIM_NAME} helper next to the library"),
            ));
        };
        let placement = shim.placement(program, argv, fds, dirs, born, attrs);
        Ok(Some(Placement::Shim(placement)))
    }

    /// A worker process was just spawned (not handed over yet, so not reaped). Through the
    /// shim: waits until the shim has placed and exec'd the worker; its failure is the
    /// spawn's. Where the shim forked the worker into its cgroup, `child` tracks the worker's
    /// pid from then on (even when the spawn fails: it is killed and reaped as the child). Then
    /// `child` gets its pidfd (`use_pidfd`) and the keeper is told.
    pub fn spawned(
        &self,
        placement: Option<Placement>,
        child: &mut Child,
        use_pidfd: bool,
    ) -> std::io::Result<()> {
        let dirs = match placement {
            Some(Placement::Shim(p)) => {
                let (forked, dirs) = p.wait();
                if let Some(worker) = forked {
                    child.forked(worker);
                }
                dirs?
            }
            Some(Placement::Born(b)) => b.placed(),
            None => Vec::new(),
        };
        if let Some(c) = &self.cgroups {
            c.placed(child.pid, dirs);
        }
        if use_pidfd {
            child.pidfd = crate::os::pidfd_open(child.pid).ok();
        }
        self.announce(child.pid, child.pidfd.as_ref());
        Ok(())
    }

    /// Tells the keeper of process `pid`, just spawned (not reaped yet), which it kills if the
    /// host dies.
    pub fn announce(&self, pid: i32, pidfd: Option<&OwnedFd>) {
        if let Some(k) = &self.keeper {
            k.spawned(pid, pidfd);
        }
    }

    /// A SIGKILL went to worker `pid`'s process group: its cgroup gets killed too.
    pub fn kill_tree(&self, pid: i32) {
        if let Some(c) = &self.cgroups {
            c.kill_tree(pid);
        }
    }

    /// Worker `pid` has exited and is about to be reaped: the keeper forgets it
    /// (`KeeperLink::reaping` says when), its cgroups are killed (what it left behind) and
    /// removed. Returns whether the OOM killer killed a process in them.
    pub fn reaping(&self, pid: i32, keeper_has_pidfd: bool) -> bool {
        if let Some(k) = &self.keeper {
            k.reaping(pid, keeper_has_pidfd);
        }
        self.cgroups.as_ref().is_some_and(|c| c.reaping(pid))
    }

    /// At free, once every worker is reaped: the keeper is told to exit and is reaped, the
    /// cgroups are removed (bounded). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(k) = &self.keeper {
            k.close();
        }
        if let Some(c) = &self.cgroups {
            c.close();
        }
    }
}

/// Whether workers can be placed in cgroups here: by the exec shim, or by the spawn itself.
fn placeable(shim: &Option<Shim>) -> bool {
    shim.is_some() || crate::os::born_in::available()
}

/// The first limit key a group sets (for a message about all of them).
fn first_key(spec: &GroupSpec) -> &'static str {
    let l = spec.limits();
    if l.memory_max.is_some() {
        "memory_max"
    } else if l.memory_high.is_some() {
        "memory_high"
    } else if l.pids_max.is_some() {
        "pids_max"
    } else {
        "cpu_max"
    }
}

/// How a worker is placed in its cgroups and given what its group asks before its program
/// runs (`Lifeline::prepare`).
pub enum Placement {
    /// Spawned as the exec shim, which does it.
    Shim(ShimPlacement),
    /// Born in its cgroup v2 by the spawn itself.
    Born(Born),
}

impl Placement {
    /// The spawn failed: the worker's cgroups, which no process entered, go.
    pub fn abandon(self) {
        match self {
            Placement::Shim(p) => remove_dirs(&p.into_dirs()),
            Placement::Born(b) => drop(b),
        }
    }

    /// The write end of the shim's report pipe (`ChildFds::report`).
    pub fn report(&self) -> Option<&OwnedFd> {
        match self {
            Placement::Shim(p) => p.report.as_ref(),
            Placement::Born(_) => None,
        }
    }

    /// What to spawn instead of the worker's own program, when something else.
    pub fn command(&self) -> Option<(&CStr, &[CString])> {
        match self {
            Placement::Shim(p) => Some((p.program.as_c_str(), &p.argv[..])),
            Placement::Born(_) => None,
        }
    }
}

/// A worker's cgroup v2, open for `clone3`, and its cgroups; removed at drop unless the worker
/// was `placed` there.
pub struct Born {
    pub cgroup: OwnedFd,
    dirs: Vec<PathBuf>,
}

impl Born {
    /// The worker runs in its cgroups: the lifeline has them from now on.
    fn placed(mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.dirs)
    }
}

impl Drop for Born {
    fn drop(&mut self) {
        remove_dirs(&self.dirs);
    }
}

/// Removes a worker's cgroups that no process entered.
fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}
