//! The exec shim (`mpsup-exec`): spawned in place of a worker that needs a cgroup, `LISTEN_PID`
//! or process attributes (part 7: limits, umask, identity), it sets the limits and the umask,
//! joins the worker's cgroup (as root, before dropping privileges), sets the groups, gid and uid,
//! then `PR_SET_NO_NEW_PRIVS`, sets `LISTEN_PID` when the environment asks, and execs the
//! worker's program. Its report pipe tells the spawner whether that went well: end of file once
//! the exec closed it, or 5 bytes (a tag naming the step, then the errno) when it failed.
//!
//! A worker with a cgroup v2 of its own is born there rather than moved (a lone move waits for
//! an RCU grace period, ~10 ms): the shim forks it into the cgroup as the host's child (`-C`),
//! reports its pid (`P`, then the pid) and exits; the worker goes on with the shim's other
//! steps and execs. The spawner then tracks the worker's pid and lets the orphanage reap the
//! shim's.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::helpers::find_helper;
use crate::core::plan::Attributes;
use crate::os;
use crate::os::cgroup::error_at;
use crate::os::spawn::ChildFds;

/// The exec shim's file name, found like the keeper.
pub const SHIM_NAME: &str = "mpsup-exec";
/// How long the spawner waits for the shim to exec the worker (only a child the host forked
/// meanwhile, holding the pipe's write end, can make it wait that long).
const SHIM_BOUND: Duration = Duration::from_secs(1);

/// The exec shim's program, when it was found next to the library.
pub(super) struct Shim(CString);

impl Shim {
    pub(super) fn find() -> Option<Shim> {
        find_helper(SHIM_NAME)
            .and_then(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok())
            .map(Shim)
    }

    /// The command that runs the shim for `program` and `argv`: it sets `attrs`, joins each of
    /// `dirs` (the worker's cgroups, one per hierarchy; `born`: the index of the one the worker
    /// is born in, when it has a report pipe to say its pid) and reports on the child's
    /// descriptor `ChildFds::report_fd` of `fds`.
    pub(super) fn placement(
        &self,
        program: &CStr,
        argv: &[CString],
        fds: &ChildFds<'_>,
        dirs: Vec<PathBuf>,
        born: Option<usize>,
        attrs: &Attributes,
    ) -> ShimPlacement {
        let report_fd = fds.report_fd();
        // Without descriptors to spare (EMFILE), the shim runs without its report: an exec
        // failure is then the worker's exit (127) instead of the spawn's error.
        let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|(read, write)| {
                Ok((
                    os::above_stdio(read)?,
                    os::dup_at_least(&write, fds.room())?,
                ))
            })
            .ok();
        let mut options = Vec::new();
        // Born in its cgroup first (only with a report pipe, which says the new pid), so that
        // the worker, not the shim, does everything after: joins the v1 cgroups (so a
        // `pids_max` counts it alone) and drops privileges.
        let born = born.filter(|_| pipe.is_some());
        if pipe.is_some() {
            options.push(("-r", report_fd.to_string()));
        }
        if let Some(i) = born {
            options.push(("-C", dirs[i].to_string_lossy().into_owned()));
        }
        let (read, report) = pipe.unzip();
        // In the order the shim must apply them: limits and umask, the cgroup (joining it needs
        // root), then identity from the groups to the uid, no_new_privs last.
        for (name, soft, hard) in &attrs.rlimits {
            options.push(("-R", format!("{name}:{soft}:{hard}")));
        }
        if let Some(umask) = attrs.umask {
            options.push(("-m", format!("{umask:o}")));
        }
        for (_, dir) in dirs.iter().enumerate().filter(|(i, _)| Some(*i) != born) {
            options.push(("-c", dir.to_string_lossy().into_owned()));
        }
        if let Some(groups) = &attrs.groups {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            options.push(("-G", list.join(",")));
        }
        if let Some(gid) = attrs.gid {
            options.push(("-g", gid.to_string()));
        }
        if let Some(uid) = attrs.uid {
            options.push(("-u", uid.to_string()));
        }
        if attrs.no_new_privileges {
            options.push(("-n", "1".into()));
        }
        let mut shim_argv = vec![self.0.clone()];
        for (option, value) in options {
            shim_argv.push(crate::config::cstring(option));
            shim_argv.push(crate::config::cstring(&value));
        }
        shim_argv.push(crate::config::cstring("--"));
        shim_argv.push(program.to_owned());
        shim_argv.extend(argv.iter().cloned());
        ShimPlacement {
            program: self.0.clone(),
            argv: shim_argv,
            report,
            read,
            dirs,
            for_program: program.to_owned(),
        }
    }
}

/// A worker's spawn through the exec shim: what to spawn instead, and the report pipe.
pub struct ShimPlacement {
    pub program: CString,
    pub argv: Vec<CString>,
    /// The write end of the shim's report pipe (`ChildFds::report`).
    pub report: Option<OwnedFd>,
    read: Option<OwnedFd>,
    /// The worker's own cgroups (one per hierarchy), when cgroups are in force.
    dirs: Vec<PathBuf>,
    for_program: CString,
}

/// What the shim's report pipe said: the pid of the worker it forked (`-C`), and the failure of
/// a step (its tag and errno).
#[derive(Default)]
struct Report {
    forked: Option<i32>,
    failed: Option<(u8, i32)>,
}

/// Reads the shim's report until end of file (every writer gone: the shim exited or exec'd,
/// and so did the worker it forked) or `SHIM_BOUND`. Each message is 5 bytes, written at once
/// (atomic in a pipe), by the shim or the worker it forked, in either order.
fn read_report(read: &OwnedFd) -> Report {
    let until = Instant::now() + SHIM_BOUND;
    let mut buf = [0u8; 10];
    let mut len = 0;
    while len < buf.len() {
        let left = until.saturating_duration_since(Instant::now()).as_millis();
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(left.min(1000) as u16)) {
            Ok(1..) => match nix::unistd::read(read, &mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            },
            Err(nix::errno::Errno::EINTR) => continue,
            _ => break,
        }
    }
    let mut report = Report::default();
    for msg in buf[..len].chunks_exact(5) {
        let value = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
        match msg[0] {
            b'P' => report.forked = Some(value),
            tag => report.failed = Some((tag, value)),
        }
    }
    report
}

impl ShimPlacement {
    /// After the spawn: waits (bounded) until the shim has placed and exec'd the worker; its
    /// failure is the spawn's. Returns the worker's pid when the shim forked it (whatever
    /// else happened: the caller owns it from then on) and the worker's cgroups.
    pub(super) fn wait(mut self) -> (Option<i32>, std::io::Result<Vec<PathBuf>>) {
        drop(self.report.take());
        let report = self.read.as_ref().map(read_report).unwrap_or_default();
        (report.forked, self.outcome(report.failed))
    }

    /// The worker's cgroups (a spawn that failed before the shim ran).
    pub(super) fn into_dirs(self) -> Vec<PathBuf> {
        self.dirs
    }

    /// The worker's cgroups, or the error of the step that failed (`failed`: its tag and errno).
    fn outcome(self, failed: Option<(u8, i32)>) -> std::io::Result<Vec<PathBuf>> {
        let Some((tag, errno)) = failed else {
            return Ok(self.dirs);
        };
        // The caller's `Child` kills and reaps the shim (or the worker it forked), which is
        // exiting.
        let err = std::io::Error::from_raw_os_error(errno);
        super::remove_dirs(&self.dirs);
        if let (Some(dir), b'C') = (self.dirs.first(), tag) {
            return Err(error_at(err, &dir.join("cgroup.procs")));
        }
        if let Some((key, call)) = attribute_step(tag) {
            return Err(std::io::Error::new(
                err.kind(),
                format!("{key}: {call}: {err}"),
            ));
        }
        Err(std::io::Error::new(
            err.kind(),
            format!("posix_spawn {}: {err}", self.for_program.to_string_lossy()),
        ))
    }
}

/// The group key and the call behind a shim's failure tag (its process attributes).
fn attribute_step(tag: u8) -> Option<(&'static str, &'static str)> {
    Some(match tag {
        b'R' => ("rlimits", "setrlimit"),
        b'G' => ("supplementary_groups", "setgroups"),
        b'g' => ("group", "setresgid"),
        b'u' => ("user", "setresuid"),
        b'n' => ("no_new_privileges", "prctl(PR_SET_NO_NEW_PRIVS)"),
        _ => return None,
    })
}
