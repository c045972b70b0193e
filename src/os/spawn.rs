//! Starting one process with `posix_spawn`, and the plan of its descriptors.
//!
//! The child leads its own process group, starts with an empty signal mask and default signal
//! dispositions, and keeps only descriptors 0, 1, 2 and those of its plan (listen sockets, then
//! the control socket, at 3, 4, ...).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use once_cell::sync::Lazy;

use crate::config::Output;

type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;
type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// glibc extensions nix does not wrap, looked up at run time so that the library still loads
/// where they are missing.
struct Extensions {
    addclosefrom: Option<AddCloseFrom>,
    addchdir: Option<AddChdir>,
}

static EXTENSIONS: Lazy<Extensions> = Lazy::new(|| {
    fn lookup(name: &CStr) -> *mut libc::c_void {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
    }
    let closefrom = lookup(c"posix_spawn_file_actions_addclosefrom_np");
    let chdir = lookup(c"posix_spawn_file_actions_addchdir_np");
    // SAFETY: when present, these symbols have exactly these glibc signatures.
    unsafe {
        Extensions {
            addclosefrom: (!closefrom.is_null())
                .then(|| std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(closefrom)),
            addchdir: (!chdir.is_null())
                .then(|| std::mem::transmute::<*mut libc::c_void, AddChdir>(chdir)),
        }
    }
});

fn context(what: &str) -> impl Fn(nix::Error) -> io::Error + '_ {
    move |e| {
        let err = io::Error::from(e);
        io::Error::new(err.kind(), format!("{what}: {err}"))
    }
}

fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::from_raw_os_error(ret);
    Err(io::Error::new(err.kind(), format!("{what}: {err}")))
}

/// The most leaked descriptors closed one by one; past that, the child closes everything.
const MAX_EXPLICIT_CLOSES: usize = 64;

/// Spawn attributes shared by a burst of spawns: own process group, empty mask, default
/// signals, and the host's inheritable descriptors to close.
pub struct SpawnAttributes {
    attr: PosixSpawnAttr,
    /// The descriptors above 2 that the host held without close-on-exec when these attributes
    /// were made; None when they could not be listed, or were too many.
    leaked: Option<Vec<RawFd>>,
}

impl SpawnAttributes {
    /// For spawns from a thread of the process's own descriptor table: the host's leaked
    /// descriptors are listed now, to be closed in each child.
    pub fn new() -> io::Result<Self> {
        Self::make(true)
    }

    /// For spawns from a thread with a private descriptor table that holds only close-on-exec
    /// descriptors (and placeholders on 0, 1 and 2, which every spawn replaces or closes):
    /// nothing to list, nothing to close.
    pub fn for_private_table() -> io::Result<Self> {
        Self::make(false)
    }

    fn make(scan: bool) -> io::Result<Self> {
        let mut attr = PosixSpawnAttr::init().map_err(context("posix_spawnattr_init"))?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
        )
        .map_err(context("posix_spawnattr_setflags"))?;
        attr.set_pgroup(Pid::from_raw(0))
            .map_err(context("posix_spawnattr_setpgroup"))?;
        attr.set_sigmask(&SigSet::empty())
            .map_err(context("posix_spawnattr_setsigmask"))?;
        // Every bit set, not sigfillset: glibc leaves its internal signals (32, 33) out of
        // sigfillset, and its spawn would then set them to SIG_IGN in the child, which exec
        // keeps. With them in the default set the worker gets SIG_DFL for every signal.
        // SAFETY: an all-ones sigset_t is a valid signal set.
        let every = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            std::ptr::write_bytes(&mut set as *mut libc::sigset_t, 0xff, 1);
            SigSet::from_sigset_t_unchecked(set)
        };
        attr.set_sigdefault(&every)
            .map_err(context("posix_spawnattr_setsigdefault"))?;
        let leaked = if scan {
            super::inheritable_descriptors().filter(|fds| fds.len() <= MAX_EXPLICIT_CLOSES)
        } else {
            Some(Vec::new())
        };
        Ok(SpawnAttributes { attr, leaked })
    }
}

/// What one process is spawned with. The descriptors of `inherit` become the child's 3, 4, ...
/// in order.
pub struct Command<'a> {
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: Option<&'a CStr>,
    pub stdout: &'a Output,
    pub stderr: &'a Output,
    /// The write ends of the pipes of captured streams (they take the place of `stdout` and
    /// `stderr`); each numbered above 2.
    pub stdout_pipe: Option<&'a OwnedFd>,
    pub stderr_pipe: Option<&'a OwnedFd>,
    /// The host's descriptors 0, 1 and 2, for a spawn from a thread whose own 0, 1 and 2 are not
    /// the host's (a private table): they become the child's 0, and its 1 and 2 where `stdout`
    /// and `stderr` inherit; a None among them was closed in the host: the child gets /dev/null
    /// there. None: the child inherits the spawning thread's 0, 1 and 2 (/dev/null for those
    /// closed or close-on-exec there).
    pub stdio: Option<[Option<&'a OwnedFd>; 3]>,
    pub inherit: &'a [&'a OwnedFd],
}

/// The first descriptor number of a plan's inherited descriptors.
pub(crate) const FIRST_INHERITED: RawFd = 3;

/// Opens where a worker's stdout or stderr goes (None: inherit), close-on-exec.
fn open_output(output: &Output) -> io::Result<Option<OwnedFd>> {
    let (path, flags) = match output {
        // Captured streams get their pipe from the plan instead.
        Output::Inherit | Output::Capture | Output::Rotate { .. } => return Ok(None),
        Output::Null => (CString::from(c"/dev/null"), OFlag::O_WRONLY),
        Output::File { path, append } => (
            crate::config::cstring(path),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | if *append {
                    OFlag::O_APPEND
                } else {
                    OFlag::O_TRUNC
                },
        ),
    };
    super::open_nonblocking(&path, flags)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.to_string_lossy())))
}

fn raw_actions(actions: &mut PosixSpawnFileActions) -> *mut libc::posix_spawn_file_actions_t {
    // PosixSpawnFileActions is a transparent wrapper of the libc object.
    (actions as *mut PosixSpawnFileActions).cast()
}

/// Spawns one process and returns its pid.
pub fn spawn(cmd: &Command<'_>, attrs: &SpawnAttributes) -> io::Result<i32> {
    let mut actions = PosixSpawnFileActions::init().map_err(context("file_actions_init"))?;
    // Opened here rather than by a file action in the child: the child of a vfork-style spawn
    // keeps its parent suspended, so an open that blocks (a FIFO without a reader) would block
    // the spawner. Non-blocking, such an open fails at once with ENXIO instead.
    let stdout = open_output(cmd.stdout)?;
    let stderr = open_output(cmd.stderr)?;
    let host = cmd.stdio.map(|[stdin, stdout, stderr]| {
        let inherits = |o: &Output| matches!(o, Output::Inherit);
        [
            stdin,
            stdout.filter(|_| inherits(cmd.stdout)),
            stderr.filter(|_| inherits(cmd.stderr)),
        ]
    });
    let stdin_fd = host.and_then(|h| h[0]);
    let stdout_fd = cmd
        .stdout_pipe
        .or(stdout.as_ref())
        .or(host.and_then(|h| h[1]));
    let stderr_fd = cmd
        .stderr_pipe
        .or(stderr.as_ref())
        .or(host.and_then(|h| h[2]));
    let last_target = FIRST_INHERITED + cmd.inherit.len() as RawFd - 1;
    // A source numbered at or below a target could be overwritten by an earlier dup2 of the
    // plan before it is copied: such sources are copied above every target first.
    let low = |fd: &OwnedFd| fd.as_raw_fd() <= last_target.max(2);
    let mut lifted: Vec<OwnedFd> = Vec::new();
    for fd in [stdin_fd, stdout_fd, stderr_fd]
        .into_iter()
        .flatten()
        .chain(cmd.inherit.iter().copied())
    {
        if low(fd) {
            lifted.push(super::dup_at_least(fd, last_target.max(2) + 1)?);
        }
    }
    let mut next_lifted = lifted.iter();
    let mut source = |fd: &OwnedFd| -> RawFd {
        if low(fd) {
            next_lifted.next().map_or(fd.as_raw_fd(), |l| l.as_raw_fd())
        } else {
            fd.as_raw_fd()
        }
    };
    let stdio_sources: Vec<(RawFd, Option<RawFd>)> = [stdin_fd, stdout_fd, stderr_fd]
        .into_iter()
        .zip(0..)
        .map(|(fd, target)| (target, fd.map(&mut source)))
        .collect();
    let inherit_sources: Vec<RawFd> = cmd.inherit.iter().map(|fd| source(fd)).collect();
    let keep: Vec<RawFd> = stdio_sources
        .iter()
        .filter_map(|&(_, fd)| fd)
        .chain(inherit_sources.iter().copied())
        .collect();
    // Whatever the host leaked without O_CLOEXEC must not reach the worker. Closing just those
    // descriptors lets exec close the rest after the parent is released, instead of a
    // closefrom in the child while the parent waits. They are closed first, so that nothing
    // set up below is closed after being set up.
    if let Some(leaked) = &attrs.leaked {
        for &fd in leaked.iter().filter(|fd| !keep.contains(fd)) {
            actions
                .add_close(fd)
                .map_err(context("file_actions_addclose"))?;
        }
    }
    for (target, fd) in stdio_sources {
        match fd {
            Some(fd) => actions
                .add_dup2(fd, target)
                .map_err(context("file_actions_adddup2"))?,
            // Closed in the host (with `stdio`), or nothing this thread's table would pass on:
            // the child gets /dev/null, never an empty 0, 1 or 2 that its first open would take.
            None if host.is_some() || !super::inheritable(target) => actions
                .add_open(target, c"/dev/null", OFlag::O_RDWR, Mode::empty())
                .map_err(context("file_actions_addopen"))?,
            None => {}
        }
    }
    for (i, fd) in inherit_sources.into_iter().enumerate() {
        actions
            .add_dup2(fd, FIRST_INHERITED + i as RawFd)
            .map_err(context("file_actions_adddup2"))?;
    }
    let ext = &*EXTENSIONS;
    if attrs.leaked.is_none() {
        if let Some(addclosefrom) = ext.addclosefrom {
            // SAFETY: the symbol has this signature; the actions object is initialised.
            check(
                unsafe { addclosefrom(raw_actions(&mut actions), last_target + 1) },
                "file_actions_addclosefrom_np",
            )?;
        }
    }
    if let Some(cwd) = cmd.cwd {
        let addchdir = ext.addchdir.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "cwd needs posix_spawn_file_actions_addchdir_np (glibc 2.29)",
            )
        })?;
        // SAFETY: the symbol has this signature; `cwd` is NUL-terminated and copied by glibc.
        check(
            unsafe { addchdir(raw_actions(&mut actions), cwd.as_ptr()) },
            "file_actions_addchdir_np",
        )?;
    }
    let pid = posix_spawn(cmd.program, &actions, &attrs.attr, cmd.argv, cmd.envp).map_err(|e| {
        let err = io::Error::from(e);
        io::Error::new(
            err.kind(),
            format!("posix_spawn {}: {err}", cmd.program.to_string_lossy()),
        )
    })?;
    Ok(pid.as_raw())
}
