//! Exec probes: a program spawned with `posix_spawn` (`os::spawn`, as workers are: its own
//! process group, an empty signal mask, no descriptor of the host's but 0, 1 and 2, output to
//! /dev/null), with the worker's environment and working directory. Its exit is seen through a
//! pidfd in the probe thread's epoll set (polled every `POLL_TICK` where pidfds are missing or
//! `Options::use_pidfd` is false); a run past its timeout is killed with its process group.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::config::Output;
use crate::core::plan::Plan;
use crate::os::spawn::{self, ChildFds, Command, SpawnAttributes, Stdio};
use crate::os::{self, ChildState};
use crate::runtime::child;
use crate::runtime::lifeline::Lifeline;

/// One exec probe in flight.
pub(super) struct ExecRun {
    pid: i32,
    pub(super) pidfd: Option<OwnedFd>,
    /// Reaped (or handed to the orphanage): nothing left to do when dropped.
    done: bool,
    /// Told of the spawn (so that the probe dies with the host) and of the reap.
    lifeline: Arc<Lifeline>,
    /// Whether the keeper was given a pidfd of it.
    keeper_has_pidfd: bool,
}

/// `PATH` as the worker's environment sets it.
fn search_path(plan: &Plan) -> Vec<u8> {
    plan.env
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec))
        .unwrap_or_else(|| b"/bin:/usr/bin".to_vec())
}

impl ExecRun {
    /// Spawns `argv` (its `argv[0]` searched in the worker's `PATH` when it has no `/`); with
    /// `use_pidfd`, opens a pidfd of it where the kernel allows.
    pub(super) fn start(
        plan: &Plan,
        argv: &[String],
        attrs: &SpawnAttributes,
        lifeline: &Arc<Lifeline>,
        use_pidfd: bool,
    ) -> Result<ExecRun, String> {
        let program = crate::runtime::plan::resolve(&argv[0], &search_path(plan))
            .ok_or_else(|| format!("exec: {}: not found in PATH", argv[0]))?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| "exec: a NUL byte in argv".to_string()))
            .collect::<Result<_, _>>()?;
        let null = Output::Null;
        let cmd = Command {
            program: &program,
            argv: &argv,
            envp: &plan.env,
            cwd: plan.cwd.as_deref(),
            fds: ChildFds {
                stdio: Stdio {
                    stdout: &null,
                    stderr: &null,
                    stdout_pipe: None,
                    stderr_pipe: None,
                    host: None,
                },
                listen: Vec::new(),
                control: None,
                report: None,
            },
        };
        let pid = spawn::spawn(&cmd, attrs).map_err(|e| format!("exec: {e}"))?;
        let pidfd = use_pidfd.then(|| os::pidfd_open(pid).ok()).flatten();
        lifeline.announce(pid, pidfd.as_ref());
        Ok(ExecRun {
            pid,
            keeper_has_pidfd: pidfd.is_some(),
            pidfd,
            done: false,
            lifeline: Arc::clone(lifeline),
        })
    }

    /// The result once the program has exited (reaped now), else None.
    pub(super) fn check(&mut self) -> Option<Result<(), String>> {
        let status = match os::peek_exit(self.pid) {
            ChildState::Running => return None,
            ChildState::Exited(status) => Some(status),
            ChildState::Gone => None,
        };
        // Before the reap: until then the pid is the probe's, for the keeper too.
        self.lifeline.reaping(self.pid, self.keeper_has_pidfd);
        os::try_reap(self.pid);
        self.done = true;
        Some(match status {
            Some(s) if s.code == Some(0) => Ok(()),
            Some(s) => Err(match (s.code, s.signal) {
                (Some(code), _) => format!("exec: exit status {code}"),
                (_, Some(sig)) => format!("exec: killed by signal {sig}"),
                _ => "exec: ended".into(),
            }),
            None => Err("exec: its exit status was lost".into()),
        })
    }
}

impl Drop for ExecRun {
    /// A run that has not ended (timed out, or the thread ends) is killed with its process
    /// group and reaped, now or by the orphanage.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let _ = os::kill_group(self.pid, libc::SIGKILL);
        let _ = os::kill_pid(self.pid, libc::SIGKILL);
        // Killed now: the keeper forgets it while the pid is still its (unreaped).
        self.lifeline.reaping(self.pid, self.keeper_has_pidfd);
        if !os::try_reap(self.pid) {
            child::orphan(self.pid);
        }
    }
}
