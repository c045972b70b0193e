//! Thin, safe wrappers over the system calls the runtime makes: nix first, raw `libc` only where
//! nix has no call (each in one small function that says why). Every descriptor made here is
//! close-on-exec.

pub(crate) mod born_in;
pub(crate) mod cgroup;
pub(crate) mod clone_args;
pub(crate) mod handover;
pub(crate) mod listen;
pub(crate) mod notify;
pub(crate) mod passing;
pub(crate) mod pidfd;
pub(crate) mod spawn;

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{killpg, Signal};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;

use crate::core::worker::ExitStatus;

pub use pidfd::pidfd_signal;

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// `fd`, moved above 2 when it landed on 0, 1 or 2 (a host that closed its standard descriptors):
/// the library never holds those numbers, which the host's next `open` expects to get and which
/// a worker inheriting the host's would receive as its stdin, stdout or stderr. Every
/// descriptor the library keeps passes through here.
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    dup_at_least(&fd, 3)
}

/// A pidfd for `pid` (above 2), or the error that says pidfds are unavailable (ENOSYS, EPERM).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    above_stdio(pidfd::pidfd_open(pid)?)
}

/// Whether `fd` is open in the calling thread's table without close-on-exec: a child would
/// inherit it.
pub fn inheritable(fd: RawFd) -> bool {
    // SAFETY: only borrowed for F_GETFD.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD)
        .is_ok_and(|flags| !FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC))
}

/// Opens `path` close-on-exec, above 2.
fn open_above_stdio(path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let mode = nix::sys::stat::Mode::empty();
    above_stdio(nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, mode).map_err(io_err)?)
}

/// The soft limit of descriptors (`RLIMIT_NOFILE`), capped to a descriptor number.
pub fn open_max() -> RawFd {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(RawFd::MAX as u64) as RawFd)
}

/// A directory opened for reference only (`O_PATH`), close-on-exec, above 2: a cgroup to be
/// born in (`born_in`).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open_above_stdio(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
}

/// The text of a small file (/proc, /sys), read through a descriptor above 2.
pub fn read_text(path: impl AsRef<Path>) -> io::Result<String> {
    let mut text = String::new();
    let fd = open_above_stdio(path.as_ref(), OFlag::O_RDONLY)?;
    std::fs::File::from(fd).read_to_string(&mut text)?;
    Ok(text)
}

/// Writes `text` to an existing file (/proc, /sys), through a descriptor above 2.
pub fn write_text(path: impl AsRef<Path>, text: &str) -> io::Result<()> {
    let fd = open_above_stdio(path.as_ref(), OFlag::O_WRONLY)?;
    std::fs::File::from(fd).write_all(text.as_bytes())
}

/// The names in directory `path`, each with whether it is a directory, read through a
/// descriptor above 2.
pub fn list_dir(path: impl AsRef<Path>) -> io::Result<Vec<(OsString, bool)>> {
    let fd = open_above_stdio(path.as_ref(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(io_err)?;
    let mut out = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            let is_dir = entry.file_type() == Some(nix::dir::Type::Directory);
            out.push((OsStr::from_bytes(name).to_owned(), is_dir));
        }
    }
    Ok(out)
}

/// A non-blocking eventfd that is readable while set: wakes a thread blocked in epoll or poll.
#[derive(Debug)]
pub struct Flag(EventFd);

impl Flag {
    pub fn new() -> io::Result<Flag> {
        let fd =
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(io_err)?;
        let fd = above_stdio(OwnedFd::from(fd))?;
        // SAFETY: `fd` is the eventfd just made (or its duplicate).
        Ok(Flag(unsafe { EventFd::from_owned_fd(fd) }))
    }

    pub fn set(&self) {
        // Fails only when the counter would overflow, which leaves it readable, as wanted.
        let _ = self.0.write(1);
    }

    pub fn clear(&self) {
        // EAGAIN: it was not set.
        let _ = self.0.read();
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// The flag of an eventfd that the host's previous image left open (`handover`); Err when
    /// `fd` is something else (without /proc to tell, it is taken at its word). Its counter is
    /// cleared: the owner sets it again as it should be.
    pub fn inherited(fd: OwnedFd) -> io::Result<Flag> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if let Some(link) = link
            .ok()
            .filter(|l| l.as_os_str() != "anon_inode:[eventfd]")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "descriptor {} is no eventfd: {}",
                    fd.as_raw_fd(),
                    link.display()
                ),
            ));
        }
        set_nonblocking(&fd)?;
        // SAFETY: an eventfd (checked above), owned.
        let flag = Flag(unsafe { EventFd::from_owned_fd(fd) });
        flag.clear();
        Ok(flag)
    }
}

/// A connected pair of close-on-exec stream Unix sockets: ours non-blocking, theirs numbered
/// above `min_theirs` (so that the spawn's `dup2` to a lower number always makes a fresh
/// descriptor).
pub fn control_socketpair(min_theirs: RawFd) -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io_err)?;
    let ours = above_stdio(ours)?;
    set_nonblocking(&ours)?;
    let theirs = if theirs.as_raw_fd() <= min_theirs {
        dup_at_least(&theirs, min_theirs + 1)?
    } else {
        theirs
    };
    Ok((ours, theirs))
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
pub fn dup_at_least(fd: &OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min)).map_err(io_err)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(io_err)?;
    Ok(())
}

/// Makes `fd` blocking (for a thread that writes to it and may wait).
pub fn set_blocking(fd: impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL).map_err(io_err)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK)).map_err(io_err)?;
    Ok(())
}

/// The descriptors above 2 that this process holds without close-on-exec (they would reach any
/// child it spawns), or None when /proc cannot be read.
pub fn inheritable_descriptors() -> Option<Vec<RawFd>> {
    let dir = list_dir("/proc/self/fd").ok()?;
    let mut out = Vec::new();
    for (name, _) in dir {
        let Some(fd) = name.to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        if fd <= 2 {
            continue;
        }
        // SAFETY: only borrowed for F_GETFD. The listing's own descriptor is close-on-exec, so
        // it is never reported; one closed meanwhile fails, which reads as "not open".
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) {
            if !FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC) {
                out.push(fd);
            }
        }
    }
    Some(out)
}

/// Opens `path` close-on-exec without blocking (a FIFO without a reader fails with ENXIO at
/// once), then makes the descriptor blocking again for whoever inherits it.
pub fn open_nonblocking(path: &std::ffi::CStr, flags: OFlag) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .map_err(io_err)?;
    let fd = above_stdio(fd)?;
    set_blocking(&fd)?;
    Ok(fd)
}

/// The file name of the loaded object (the program, or a shared library) that holds `address`,
/// as the dynamic loader names it: relative or empty for the main program at times. Raw: nix
/// has no dladdr.
pub fn object_file_of(address: *const ()) -> Option<String> {
    // SAFETY: dladdr fills `info` for an address of a loaded object; dli_fname is a C string that
    // lives as long as the object stays loaded, and is copied at once.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address.cast(), &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

fn signal_of(sig: i32) -> Option<Signal> {
    Signal::try_from(sig).ok()
}

/// Whether `sig` names a signal this library can send (the standard ones, 1 to 31).
pub fn is_signal(sig: i32) -> bool {
    signal_of(sig).is_some()
}

/// Sends `sig` to a process group. ESRCH (nothing left in it) is not an error.
pub fn kill_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Ok(());
    }
    match killpg(Pid::from_raw(pgid), signal_of(sig)) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Sends `sig` to one process. Callers only name children they have not reaped yet, so the pid
/// cannot have been reused. ESRCH is not an error.
pub fn kill_pid(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 1 {
        return Ok(());
    }
    match nix::sys::signal::kill(Pid::from_raw(pid), signal_of(sig)) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Sends `sig` to a worker (a process group leader) and its process group, so that the worker
/// gets it exactly once: a second SIGTERM or SIGINT means "stop now" to many programs. A worker
/// that moved to another group gets it by pid, and what it left in its own group by the group.
pub fn signal_worker(pid: i32, sig: i32) -> io::Result<()> {
    match nix::unistd::getpgid(Some(Pid::from_raw(pid))) {
        Ok(pgid) if pgid.as_raw() == pid => kill_group(pid, sig),
        _ => kill_pid(pid, sig).and(kill_group(pid, sig)),
    }
}

/// What `peek_exit` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    Running,
    /// Exited and still a zombie: its pid (and process group id) cannot be reused yet.
    Exited(ExitStatus),
    /// Already reaped by someone else, e.g. the kernel when the host ignores SIGCHLD.
    Gone,
}

/// `waitid` for one child. Raw: nix's `WaitStatus` cannot carry real-time signals, and a
/// worker killed by one must still be reaped with its status.
fn waitid(pid: i32, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writing.
        let ret = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled `info` (si_pid stays 0 when WNOHANG found nothing).
        let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
        if child == 0 {
            return Ok(None);
        }
        let exited = info.si_code == libc::CLD_EXITED;
        return Ok(Some(ExitStatus {
            code: exited.then_some(status),
            signal: (!exited).then_some(status),
            oom_killed: false,
        }));
    }
}

/// Looks at a child without reaping it.
pub fn peek_exit(pid: i32) -> ChildState {
    match waitid(pid, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) {
        Ok(None) => ChildState::Running,
        Ok(Some(status)) => ChildState::Exited(status),
        Err(_) => ChildState::Gone,
    }
}

/// Reaps a child if it has exited; true when it is gone (reaped now, or by someone else).
pub fn try_reap(pid: i32) -> bool {
    !matches!(waitid(pid, libc::WEXITED | libc::WNOHANG), Ok(None))
}

/// Sends as much of `bytes` as the socket takes now, without blocking and without raising
/// SIGPIPE in the host. Ok(0) when its buffer is full; Err when the peer is gone.
pub fn send_some(fd: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match socket::send(
            fd.as_raw_fd(),
            bytes,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// What a non-blocking read returned.
pub enum ReadResult {
    Data(usize),
    WouldBlock,
    Closed,
}

pub fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> ReadResult {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return ReadResult::Closed,
            Ok(n) => return ReadResult::Data(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return ReadResult::WouldBlock,
            Err(_) => return ReadResult::Closed,
        }
    }
}

/// An epoll set; level-triggered, reporting a token per descriptor.
#[derive(Debug)]
pub struct Poller(Epoll);

impl Poller {
    pub fn new() -> io::Result<Poller> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io_err)?;
        Ok(Poller(Epoll(above_stdio(epoll.0)?)))
    }

    /// Watches `fd` for input, reporting `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.0
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io_err)
    }

    /// Watches `fd` for input, reporting `token` once: then it stays silent.
    /// Closing it needs no `remove`: even where a child the host forked keeps a copy (and so
    /// the registration), a disabled entry never reports again, and tokens are never reused.
    pub fn add_once(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
        self.0
            .add(fd, EpollEvent::new(flags, token))
            .map_err(io_err)
    }

    /// Watches `fd` for input, and for room to write while `write` is true.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, write: bool) -> io::Result<()> {
        let mut flags = EpollFlags::EPOLLIN;
        if write {
            flags |= EpollFlags::EPOLLOUT;
        }
        self.0
            .modify(fd, &mut EpollEvent::new(flags, token))
            .map_err(io_err)
    }

    /// Stops watching `fd`. Explicit, because a copy of the descriptor held by a child the host
    /// forked would otherwise keep it registered after we close ours.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = self.0.delete(fd);
    }

    /// Waits up to `timeout` (None: forever) and fills `out` with (token, readable, writable).
    pub fn wait(
        &self,
        out: &mut Vec<(u64, bool, bool)>,
        capacity: usize,
        timeout: Option<Duration>,
    ) {
        let mut events = vec![EpollEvent::empty(); capacity];
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Rounded up, so that a deadline is never seen a millisecond early and spun on.
            Some(t) => {
                PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
            }
        };
        out.clear();
        let n = self.0.wait(&mut events, timeout).unwrap_or(0);
        for ev in &events[..n] {
            let flags = ev.events();
            let writable = flags.contains(EpollFlags::EPOLLOUT);
            let readable = flags.intersects(!EpollFlags::EPOLLOUT);
            out.push((ev.data(), readable, writable));
        }
    }
}

/// `CAP_SETGID`, `CAP_SETUID`, `CAP_SYS_RESOURCE` (linux/capability.h).
pub(crate) const CAP_SETGID: u32 = 6;
pub(crate) const CAP_SETUID: u32 = 7;
pub(crate) const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has capability `cap` in its effective set (`CapEff` of
/// /proc/self/status); without /proc, whether it runs as root.
pub fn has_capability(cap: u32) -> bool {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    match effective {
        Some(bits) => bits & (1 << cap) != 0,
        None => nix::unistd::geteuid().is_root(),
    }
}
