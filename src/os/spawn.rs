//! Starting one process with `posix_spawn`, and the layout of its descriptors.
//!
//! The child leads its own process group, starts with an empty signal mask and default signal
//! dispositions, and keeps only the descriptors of its layout (`ChildFds`): 0, 1, 2, then its
//! listen sockets, control socket and the exec shim's report pipe at 3, 4, ...

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

/// The first descriptor number after 0, 1 and 2.
pub(crate) const FIRST_INHERITED: RawFd = 3;

/// Where a child's 0, 1 and 2 come from.
#[derive(Clone, Copy)]
pub struct Stdio<'a> {
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
    pub host: Option<[Option<&'a OwnedFd>; 3]>,
}

/// The whole descriptor layout of one child; every other descriptor is closed in it.
///
/// | child's descriptor | what |
/// | --- | --- |
/// | 0 | the host's (`Stdio::host`) or the spawning thread's stdin; /dev/null where closed |
/// | 1, 2 | a captured stream's pipe, else the file of `Output::File` or `Output::Null`, else (inherit) the host's or the spawning thread's; /dev/null where closed |
/// | 3, 4, ... | the listen sockets, in order |
/// | next | the control socket (a worker's end of it; the keeper's socket for the keeper), when there is one |
/// | next | the exec shim's report pipe, when the spawn goes through the shim and the pipe could be made |
///
/// Built by the spawner once the control socket exists (without one, the report pipe takes its
/// number), given the report pipe by the lifeline, which needs its number first (`report_fd`),
/// and carried out by `spawn`.
#[derive(Clone)]
pub struct ChildFds<'a> {
    pub stdio: Stdio<'a>,
    pub listen: Vec<&'a OwnedFd>,
    pub control: Option<&'a OwnedFd>,
    pub report: Option<&'a OwnedFd>,
}

impl<'a> ChildFds<'a> {
    /// The descriptors above 2, in the order of their numbers in the child (3, 4, ...).
    fn inherited(&self) -> impl Iterator<Item = &'a OwnedFd> + '_ {
        self.listen
            .iter()
            .copied()
            .chain(self.control)
            .chain(self.report)
    }

    /// The child's number of its control socket, when it has one.
    pub fn control_fd(&self) -> Option<RawFd> {
        self.control
            .map(|_| FIRST_INHERITED + self.listen.len() as RawFd)
    }

    /// The child's number of the exec shim's report pipe, which comes last: known before the
    /// pipe exists.
    pub fn report_fd(&self) -> RawFd {
        FIRST_INHERITED + self.listen.len() as RawFd + RawFd::from(self.control.is_some())
    }

    /// A number above every one the complete layout can assign (listen sockets, control socket,
    /// report pipe): the spawner's copies of the control socket and the report pipe are made
    /// from there, so that the spawn need not move them out of the way first.
    pub fn room(&self) -> RawFd {
        FIRST_INHERITED + self.listen.len() as RawFd + 2
    }

    /// The highest number the layout assigns (2 when it has nothing above 2).
    fn last_target(&self) -> RawFd {
        FIRST_INHERITED + self.inherited().count() as RawFd - 1
    }
}

/// What one process is spawned with.
pub struct Command<'a> {
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: Option<&'a CStr>,
    pub fds: ChildFds<'a>,
}

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

/// Where each of a child's descriptors is copied from, in the spawning thread's table: a source
/// numbered at or below a target could be overwritten by an earlier dup2 of the plan before it
/// is copied, so such sources are copied above every target first (`_lifted` holds them).
struct Sources {
    /// The sources of 0, 1 and 2 (None: /dev/null, or left as the spawning thread's).
    stdio: [Option<RawFd>; 3],
    /// The sources of 3, 4, ...
    inherited: Vec<RawFd>,
    _lifted: Vec<OwnedFd>,
}

impl Sources {
    fn new(stdio: [Option<&OwnedFd>; 3], fds: &ChildFds<'_>) -> io::Result<Sources> {
        let above = fds.last_target().max(2);
        let mut lifted = Vec::new();
        let mut source = |fd: &OwnedFd| -> io::Result<RawFd> {
            if fd.as_raw_fd() > above {
                return Ok(fd.as_raw_fd());
            }
            let copy = super::dup_at_least(fd, above + 1)?;
            let raw = copy.as_raw_fd();
            lifted.push(copy);
            Ok(raw)
        };
        let mut stdio_sources = [None; 3];
        for (slot, fd) in stdio_sources.iter_mut().zip(stdio) {
            *slot = fd.map(&mut source).transpose()?;
        }
        let inherited = fds
            .inherited()
            .map(&mut source)
            .collect::<io::Result<_>>()?;
        Ok(Sources {
            stdio: stdio_sources,
            inherited,
            _lifted: lifted,
        })
    }

    fn keeps(&self, fd: RawFd) -> bool {
        self.stdio.contains(&Some(fd)) || self.inherited.contains(&fd)
    }
}

/// The sources of a child's 0, 1 and 2: the host's, a captured stream's pipe, or a file opened
/// for it (`opened`: stdout's and stderr's).
fn stdio_sources<'b>(
    stdio: &Stdio<'b>,
    opened: &'b [Option<OwnedFd>; 2],
) -> [Option<&'b OwnedFd>; 3] {
    let inherits = |o: &Output| matches!(o, Output::Inherit);
    let host = stdio.host.map(|[stdin, stdout, stderr]| {
        [
            stdin,
            stdout.filter(|_| inherits(stdio.stdout)),
            stderr.filter(|_| inherits(stdio.stderr)),
        ]
    });
    let from_host = |i: usize| host.and_then(|h| h[i]);
    [
        from_host(0),
        stdio
            .stdout_pipe
            .or(opened[0].as_ref())
            .or_else(|| from_host(1)),
        stdio
            .stderr_pipe
            .or(opened[1].as_ref())
            .or_else(|| from_host(2)),
    ]
}

/// One step of a child's descriptor layout, carried out in the child in order before its exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdStep {
    Close(RawFd),
    Dup2 {
        from: RawFd,
        to: RawFd,
    },
    /// `/dev/null`, opened read-write at this number.
    DevNull(RawFd),
}

/// The steps that give the child its descriptors: the host's leaked ones closed, 0, 1 and 2,
/// then 3, 4, ...
fn fd_steps(attrs: &SpawnAttributes, sources: &Sources, from_host: bool) -> Vec<FdStep> {
    let mut steps = Vec::new();
    // Whatever the host leaked without O_CLOEXEC must not reach the worker. Closing just those
    // descriptors lets exec close the rest after the parent is released, instead of a
    // closefrom in the child while the parent waits. They are closed first, so that nothing
    // set up below is closed after being set up.
    if let Some(leaked) = &attrs.leaked {
        steps.extend(
            leaked
                .iter()
                .filter(|&&fd| !sources.keeps(fd))
                .map(|&fd| FdStep::Close(fd)),
        );
    }
    for (target, fd) in (0..).zip(sources.stdio) {
        match fd {
            Some(from) => steps.push(FdStep::Dup2 { from, to: target }),
            // Closed in the host (`Stdio::host`), or nothing this thread's table would pass on:
            // the child gets /dev/null, never an empty 0, 1 or 2 that its first open would take.
            None if from_host || !super::inheritable(target) => steps.push(FdStep::DevNull(target)),
            None => {}
        }
    }
    for (to, &from) in (FIRST_INHERITED..).zip(&sources.inherited) {
        steps.push(FdStep::Dup2 { from, to });
    }
    steps
}

/// A child's descriptor layout made ready in the spawning thread: the files it writes to
/// opened, the sources moved above every target, the steps in order.
pub(crate) struct Layout {
    pub(crate) steps: Vec<FdStep>,
    /// Where the host's leaked descriptors could not be listed: everything from this number up
    /// is closed in the child.
    pub(crate) close_from: Option<RawFd>,
    _opened: [Option<OwnedFd>; 2],
    _sources: Sources,
}

impl Layout {
    pub(crate) fn new(fds: &ChildFds<'_>, attrs: &SpawnAttributes) -> io::Result<Layout> {
        let stdio = &fds.stdio;
        // Opened here rather than in the child: the child of a vfork-style spawn keeps its
        // parent suspended, so an open that blocks (a FIFO without a reader) would block the
        // spawner. Non-blocking, such an open fails at once with ENXIO instead.
        let opened = [open_output(stdio.stdout)?, open_output(stdio.stderr)?];
        let sources = Sources::new(stdio_sources(stdio, &opened), fds)?;
        Ok(Layout {
            steps: fd_steps(attrs, &sources, stdio.host.is_some()),
            close_from: attrs.leaked.is_none().then(|| fds.last_target() + 1),
            _opened: opened,
            _sources: sources,
        })
    }
}

/// The file actions that carry out `layout`'s steps.
fn add_descriptors(actions: &mut PosixSpawnFileActions, layout: &Layout) -> io::Result<()> {
    for step in &layout.steps {
        match *step {
            FdStep::Close(fd) => actions
                .add_close(fd)
                .map_err(context("file_actions_addclose"))?,
            FdStep::Dup2 { from, to } => actions
                .add_dup2(from, to)
                .map_err(context("file_actions_adddup2"))?,
            FdStep::DevNull(fd) => actions
                .add_open(fd, c"/dev/null", OFlag::O_RDWR, Mode::empty())
                .map_err(context("file_actions_addopen"))?,
        }
    }
    Ok(())
}

/// The file actions of the glibc extensions: closing everything from `close_from` up where the
/// host's leaked descriptors could not be listed, and the working directory.
fn add_extensions(
    actions: &mut PosixSpawnFileActions,
    close_from: Option<RawFd>,
    cwd: Option<&CStr>,
) -> io::Result<()> {
    let ext = &*EXTENSIONS;
    if let (Some(first), Some(addclosefrom)) = (close_from, ext.addclosefrom) {
        // SAFETY: the symbol has this signature; the actions object is initialised.
        check(
            unsafe { addclosefrom(raw_actions(actions), first) },
            "file_actions_addclosefrom_np",
        )?;
    }
    if let Some(cwd) = cwd {
        let addchdir = ext.addchdir.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "cwd needs posix_spawn_file_actions_addchdir_np (glibc 2.29)",
            )
        })?;
        // SAFETY: the symbol has this signature; `cwd` is NUL-terminated and copied by glibc.
        check(
            unsafe { addchdir(raw_actions(actions), cwd.as_ptr()) },
            "file_actions_addchdir_np",
        )?;
    }
    Ok(())
}

/// Spawns one process with the descriptors of `cmd.fds` and returns its pid.
pub fn spawn(cmd: &Command<'_>, attrs: &SpawnAttributes) -> io::Result<i32> {
    let mut actions = PosixSpawnFileActions::init().map_err(context("file_actions_init"))?;
    let layout = Layout::new(&cmd.fds, attrs)?;
    add_descriptors(&mut actions, &layout)?;
    add_extensions(&mut actions, layout.close_from, cmd.cwd)?;
    let pid = posix_spawn(cmd.program, &actions, &attrs.attr, cmd.argv, cmd.envp)
        .map_err(|e| spawn_error(cmd.program, e.into()))?;
    Ok(pid.as_raw())
}

/// A spawn's failure, naming the program.
pub(crate) fn spawn_error(program: &CStr, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("posix_spawn {}: {err}", program.to_string_lossy()),
    )
}
