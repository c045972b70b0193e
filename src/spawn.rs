//! Starting one worker process with `posix_spawn`.
//!
//! The child leads its own process group, starts with an empty signal mask and default signal
//! dispositions, and keeps only descriptors 0, 1, 2 and its control socket (as descriptor 3).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;

use once_cell::sync::Lazy;

use crate::config::Output;
use crate::sys;

/// The descriptor number a worker finds its control socket at.
pub(crate) const CONTROL_FD: libc::c_int = 3;

/// Everything needed to spawn one worker.
pub struct SpawnRequest<'a> {
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: Option<&'a CStr>,
    pub stdout: &'a Output,
    pub stderr: &'a Output,
    /// The worker's end of the control socket; it becomes descriptor `CONTROL_FD` in the child.
    pub control: Option<&'a OwnedFd>,
}

type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;
type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// glibc extensions looked up at run time, so the library still loads where they are missing.
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

fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        let err = io::Error::from_raw_os_error(ret);
        Err(io::Error::new(err.kind(), format!("{what}: {err}")))
    }
}

/// The most leaked descriptors closed one by one; past that, the child closes everything.
const MAX_EXPLICIT_CLOSES: usize = 64;

/// Spawn attributes shared by the workers of one call: own process group, empty mask, default
/// signals, and the host's inheritable descriptors to close.
pub struct SpawnAttributes {
    attr: libc::posix_spawnattr_t,
    /// The descriptors above 2 that the host holds without close-on-exec, found when these
    /// attributes were made; None when they could not be listed, or were too many.
    leaked: Option<Vec<RawFd>>,
}

impl SpawnAttributes {
    pub fn new() -> io::Result<Self> {
        // SAFETY: the attribute object is initialised before use and destroyed on drop; the
        // signal sets are initialised by sigemptyset/sigfillset before they are read.
        unsafe {
            let mut attr = std::mem::zeroed();
            check(
                libc::posix_spawnattr_init(&mut attr),
                "posix_spawnattr_init",
            )?;
            let leaked =
                sys::inheritable_descriptors().filter(|fds| fds.len() <= MAX_EXPLICIT_CLOSES);
            let mut a = SpawnAttributes { attr, leaked };
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(
                libc::posix_spawnattr_setflags(&mut a.attr, flags as libc::c_short),
                "setflags",
            )?;
            check(libc::posix_spawnattr_setpgroup(&mut a.attr, 0), "setpgroup")?;
            let mut set = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            check(
                libc::posix_spawnattr_setsigmask(&mut a.attr, &set),
                "setsigmask",
            )?;
            // Every bit set, not sigfillset: glibc leaves its internal signals (32, 33) out of
            // sigfillset, and its spawn would then set them to SIG_IGN in the child, which exec
            // keeps. With them in the default set the worker gets SIG_DFL for every signal.
            std::ptr::write_bytes(&mut set as *mut libc::sigset_t, 0xff, 1);
            check(
                libc::posix_spawnattr_setsigdefault(&mut a.attr, &set),
                "setsigdefault",
            )?;
            Ok(a)
        }
    }
}

impl Drop for SpawnAttributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`.
        unsafe { libc::posix_spawnattr_destroy(&mut self.attr) };
    }
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: initialised here, destroyed on drop.
        unsafe {
            let mut fa = std::mem::zeroed();
            check(
                libc::posix_spawn_file_actions_init(&mut fa),
                "file_actions_init",
            )?;
            Ok(FileActions(fa))
        }
    }

    fn dup2(&mut self, fd: RawFd, target: RawFd) -> io::Result<()> {
        // SAFETY: plain file action on a descriptor we own until spawn returns.
        check(
            unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, fd, target) },
            "file_actions_adddup2",
        )
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Opens where a worker's stdout or stderr goes (None: inherit), close-on-exec.
fn open_output(output: &Output) -> io::Result<Option<OwnedFd>> {
    let (path, flags) = match output {
        Output::Inherit => return Ok(None),
        Output::Null => (CString::from(c"/dev/null"), libc::O_WRONLY),
        Output::File { path, append } => (
            crate::config::cstring(path),
            libc::O_WRONLY
                | libc::O_CREAT
                | if *append {
                    libc::O_APPEND
                } else {
                    libc::O_TRUNC
                },
        ),
    };
    sys::open_nonblocking(&path, flags)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.to_string_lossy())))
}

/// Spawns one worker and returns its pid. `argv[0]` without a `/` is searched in the
/// supervisor's `PATH` (that is what `posix_spawnp` does).
pub fn spawn(req: &SpawnRequest<'_>, attrs: &SpawnAttributes) -> io::Result<libc::pid_t> {
    let mut actions = FileActions::new()?;
    // Opened here rather than by a file action in the child: the child of a vfork-style spawn
    // keeps its parent suspended, so an open that blocks (a FIFO without a reader) would block
    // the supervisor. Non-blocking, such an open fails at once with ENXIO instead.
    let stdout = open_output(req.stdout)?;
    let stderr = open_output(req.stderr)?;
    let keep: Vec<RawFd> = [stdout.as_ref(), stderr.as_ref(), req.control]
        .into_iter()
        .flatten()
        .map(|fd| fd.as_raw_fd())
        .collect();
    let ext = &*EXTENSIONS;
    // Whatever the host leaked without O_CLOEXEC must not reach the worker. Closing just those
    // descriptors lets exec close the rest after the parent is released, instead of a
    // closefrom in the child while the parent waits (which costs seconds at 5,000 workers).
    // They are closed first, so that nothing below (descriptor 3 above all) is closed after
    // being set up. A descriptor leaked by another host thread during this very call may still
    // slip through.
    if let Some(leaked) = &attrs.leaked {
        for &fd in leaked.iter().filter(|fd| !keep.contains(fd)) {
            // SAFETY: plain file action; closing a descriptor the child may not have is allowed.
            check(
                unsafe { libc::posix_spawn_file_actions_addclose(&mut actions.0, fd) },
                "file_actions_addclose",
            )?;
        }
    }
    for (target, fd) in [(1, &stdout), (2, &stderr)] {
        if let Some(fd) = fd {
            actions.dup2(fd.as_raw_fd(), target)?;
        }
    }
    if let Some(control) = req.control {
        // The supervisor keeps the control end above 3, so this dup2 always makes a new,
        // inheritable descriptor 3.
        debug_assert!(control.as_raw_fd() > CONTROL_FD);
        actions.dup2(control.as_raw_fd(), CONTROL_FD)?;
    }
    if attrs.leaked.is_none() {
        if let Some(addclosefrom) = ext.addclosefrom {
            let first = if req.control.is_some() {
                CONTROL_FD + 1
            } else {
                CONTROL_FD
            };
            // SAFETY: the symbol has this signature.
            check(
                unsafe { addclosefrom(&mut actions.0, first) },
                "file_actions_addclosefrom_np",
            )?;
        }
    }
    if let Some(cwd) = req.cwd {
        let addchdir = ext.addchdir.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "cwd needs posix_spawn_file_actions_addchdir_np (glibc 2.29)",
            )
        })?;
        // SAFETY: the symbol has this signature; `cwd` is NUL-terminated and copied by glibc.
        check(
            unsafe { addchdir(&mut actions.0, cwd.as_ptr()) },
            "file_actions_addchdir_np",
        )?;
    }

    let mut argv: Vec<*mut libc::c_char> = req.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = req.envp.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(ptr::null_mut());
    let program = &req.argv[0];
    let search = !program.to_bytes().contains(&b'/');
    let mut pid: libc::pid_t = 0;
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that outlive
    // the call; the attribute and file-action objects are initialised.
    let ret = unsafe {
        if search {
            libc::posix_spawnp(
                &mut pid,
                program.as_ptr(),
                &actions.0,
                &attrs.attr,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        } else {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions.0,
                &attrs.attr,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        }
    };
    if ret != 0 {
        let err = io::Error::from_raw_os_error(ret);
        return Err(io::Error::new(
            err.kind(),
            format!("posix_spawn {}: {err}", program.to_string_lossy()),
        ));
    }
    Ok(pid)
}
