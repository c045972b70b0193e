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
    pub fn new() -> io::Result<Self> {
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
        let leaked =
            super::inheritable_descriptors().filter(|fds| fds.len() <= MAX_EXPLICIT_CLOSES);
        Ok(SpawnAttributes { attr, leaked })
    }
}

/// What one process is spawned with. The descriptors of `inherit` become the child's 3, 4, ...
/// in order; each must be numbered above the last of those targets, so that no `dup2` of the
/// plan overwrites a source still to be copied.
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
    let stdout_fd = cmd.stdout_pipe.or(stdout.as_ref());
    let stderr_fd = cmd.stderr_pipe.or(stderr.as_ref());
    let last_target = FIRST_INHERITED + cmd.inherit.len() as RawFd - 1;
    let keep: Vec<RawFd> = [stdout_fd, stderr_fd]
        .into_iter()
        .flatten()
        .chain(cmd.inherit.iter().copied())
        .map(|fd| fd.as_raw_fd())
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
    for (target, fd) in [(1, stdout_fd), (2, stderr_fd)] {
        if let Some(fd) = fd {
            actions
                .add_dup2(fd.as_raw_fd(), target)
                .map_err(context("file_actions_adddup2"))?;
        }
    }
    for (i, fd) in cmd.inherit.iter().enumerate() {
        debug_assert!(fd.as_raw_fd() > last_target);
        actions
            .add_dup2(fd.as_raw_fd(), FIRST_INHERITED + i as RawFd)
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
