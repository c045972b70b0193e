//! What kills the workers when the host cannot, one idea a module:
//! - `keeper.rs`: the keeper process, which outlives a host that dies and then kills every
//!   worker's process group and cgroup;
//! - `cgroup.rs`: the workers' cgroups, which reach descendants that left their process group,
//!   and the thread that removes them;
//! - `shim.rs`: the exec shim, which places a worker in its cgroup (and sets `LISTEN_PID`) before
//!   its program runs;
//! - `helpers.rs`: finding the keeper and the shim next to the library.
//!
//! `Lifeline` holds the three together for the rest of the runtime, and says which guarantees
//! are in force (`HostDeath`, `TreeKill`).

mod cgroup;
mod helpers;
mod keeper;
mod shim;

pub use crate::status::{HostDeath, TreeKill};
use std::ffi::{CStr, CString};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::core::plan::Attributes;
use crate::os::spawn::ChildFds;

use cgroup::Cgroups;
use helpers::find_helper;
use keeper::{KeeperLink, KEEPER_NAME};
use shim::Shim;
pub use shim::{Placement, SHIM_NAME};

/// What the host asked for (from `Options`).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub keeper: bool,
    /// The keeper program to run; None: looked up next to the library.
    pub keeper_path: Option<PathBuf>,
    pub cgroup: bool,
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
        // Only with the shim, which places each worker in its cgroup.
        let cgroups = (wanted.cgroup && shim.is_some())
            .then(|| Cgroups::start(n))
            .flatten();
        // Without one (not found, not runnable), `host_death` says "none".
        let keeper = if wanted.keeper {
            wanted
                .keeper_path
                .clone()
                .or_else(|| find_helper(KEEPER_NAME))
                .and_then(|p| KeeperLink::start(&p, cgroups.as_ref().map(Cgroups::dir)).ok())
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

    pub fn host_death(&self) -> HostDeath {
        match &self.keeper {
            Some(k) if !self.closed.load(Ordering::Acquire) && k.alive() => HostDeath::Keeper,
            _ => HostDeath::None,
        }
    }

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
    pub fn spawner_descriptors(&self) -> Vec<RawFd> {
        self.keeper.iter().map(KeeperLink::socket).collect()
    }

    /// Whether a spawn goes through the exec shim (and so passes its report descriptor):
    /// where cgroups are in force, the worker needs `LISTEN_PID` (it has listen sockets), or its
    /// group sets process attributes (identity, umask, limits).
    fn uses_shim(&self, fds: &ChildFds<'_>, attrs: &Attributes) -> bool {
        self.cgroups.is_some() || !fds.listen.is_empty() || attrs.first_key().is_some()
    }

    /// Before a worker's spawn that `uses_shim`: makes its cgroup (one per worker process, under
    /// its group's) and the command that runs the exec shim, which joins it, sets `LISTEN_PID`
    /// when the environment asks, and then execs the worker. The shim reports on the descriptor
    /// that `fds` has for it (`ChildFds::report_fd`); the placement's report pipe goes there.
    /// `attrs`: what the shim sets before the exec.
    pub fn prepare(
        &self,
        group: &str,
        program: &CStr,
        argv: &[CString],
        fds: &ChildFds<'_>,
        attrs: &Attributes,
    ) -> std::io::Result<Option<Placement>> {
        if !self.uses_shim(fds, attrs) {
            return Ok(None);
        }
        let shim = self.shim.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("this worker needs the {SHIM_NAME} helper next to the library"),
            )
        })?;
        let dir = match &self.cgroups {
            Some(c) => Some(c.make_worker_dir(group)?),
            None => None,
        };
        Ok(Some(shim.placement(program, argv, fds, dir, attrs)))
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
            if let (Some(dir), Some(c)) = (p.wait()?, &self.cgroups) {
                c.placed(pid, dir);
            }
        }
        if let Some(k) = &self.keeper {
            k.spawned(pid, pidfd);
        }
        Ok(())
    }

    /// A SIGKILL went to worker `pid`'s process group: its cgroup gets killed too.
    pub fn kill_tree(&self, pid: i32) {
        if let Some(c) = &self.cgroups {
            c.kill_tree(pid);
        }
    }

    /// Worker `pid` has exited and is about to be reaped: the keeper forgets it
    /// (`KeeperLink::reaping` says when), its cgroup is killed (what it left behind) and removed.
    pub fn reaping(&self, pid: i32, keeper_has_pidfd: bool) {
        if let Some(k) = &self.keeper {
            k.reaping(pid, keeper_has_pidfd);
        }
        if let Some(c) = &self.cgroups {
            c.reaping(pid);
        }
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
