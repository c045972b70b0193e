//! The exec shim (`mpsup-exec`): spawned in place of a worker that needs a cgroup, `LISTEN_PID`
//! or process attributes (part 7: limits, umask, identity), it sets the limits and the umask,
//! joins the worker's cgroup (as root, before dropping privileges), sets the groups, gid and uid,
//! then `PR_SET_NO_NEW_PRIVS`, sets `LISTEN_PID` when the environment asks, and execs the
//! worker's program. Its report pipe tells the spawner whether that went well: end of file once
//! the exec closed it, or 5 bytes (a tag naming the step, then the errno) when it failed.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

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
    /// `dirs` (the worker's cgroups, one per hierarchy) and reports on the child's descriptor
    /// `ChildFds::report_fd` of `fds`.
    pub(super) fn placement(
        &self,
        program: &CStr,
        argv: &[CString],
        fds: &ChildFds<'_>,
        dirs: Vec<PathBuf>,
        attrs: &Attributes,
    ) -> Placement {
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
        if pipe.is_some() {
            options.push(("-r", report_fd.to_string()));
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
        for dir in &dirs {
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
        Placement {
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
pub struct Placement {
    pub program: CString,
    pub argv: Vec<CString>,
    /// The write end of the shim's report pipe (`ChildFds::report`).
    pub report: Option<OwnedFd>,
    read: Option<OwnedFd>,
    /// The worker's own cgroups (one per hierarchy), when cgroups are in force.
    dirs: Vec<PathBuf>,
    for_program: CString,
}

impl Placement {
    /// After the spawn: waits (bounded) until the shim has joined the cgroup and exec'd the
    /// worker; its failure is the spawn's. Returns the worker's cgroups.
    pub(super) fn wait(self) -> std::io::Result<Vec<PathBuf>> {
        drop(self.report);
        let mut buf = [0u8; 5];
        let n = match &self.read {
            Some(read) => {
                let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(SHIM_BOUND.as_millis() as u16)) {
                    Ok(1..) => nix::unistd::read(read, &mut buf).unwrap_or(0),
                    _ => 0,
                }
            }
            None => 0,
        };
        if n != buf.len() {
            return Ok(self.dirs);
        }
        // The caller's `Child` kills and reaps the shim, which is exiting.
        let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let err = std::io::Error::from_raw_os_error(errno);
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
        if let (Some(dir), b'C') = (self.dirs.first(), buf[0]) {
            return Err(error_at(err, &dir.join("cgroup.procs")));
        }
        if let Some((key, call)) = attribute_step(buf[0]) {
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
