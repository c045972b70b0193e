//! Thin, safe wrappers over the Linux system calls the core uses. Every descriptor made here is
//! close-on-exec. This module and `spawn.rs` are the core's only `unsafe` code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{SystemTime, UNIX_EPOCH};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    check(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A non-blocking, close-on-exec eventfd.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
}

/// Makes an eventfd readable.
pub fn eventfd_signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64. It can only fail on counter overflow, which
    // leaves the descriptor readable, as wanted.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Makes an eventfd unreadable again.
pub fn eventfd_reset(fd: &OwnedFd) {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64; EAGAIN (already reset) is fine.
    unsafe { libc::read(fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
}

/// A connected pair of close-on-exec, stream Unix sockets.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
pub fn dup_at_least(fd: &OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain system call on a descriptor we own.
    owned(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })
}

/// The descriptors above 2 that this process holds without close-on-exec (they would reach any
/// child it spawns), or None when /proc cannot be read.
pub fn inheritable_descriptors() -> Option<Vec<RawFd>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: F_GETFD only reads flags. The listing's own descriptor is close-on-exec, so
        // it is never reported; a descriptor closed meanwhile fails, which reads as "not open".
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if fd > 2 && flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            out.push(fd);
        }
    }
    Some(out)
}

/// Opens `path` close-on-exec without blocking (a FIFO without a reader fails with ENXIO),
/// then makes the descriptor blocking again for whoever inherits it.
pub fn open_nonblocking(path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: NUL-terminated path; the mode only applies with O_CREAT.
    let fd = owned(unsafe { libc::open(path.as_ptr(), flags, 0o644 as libc::c_uint) })?;
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        let fl = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            fl & !libc::O_NONBLOCK,
        ))?;
    }
    Ok(fd)
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain system calls on a descriptor we own.
    unsafe {
        let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// A pidfd for `pid`, or the error that says pidfds are unavailable (ENOSYS, EPERM, ...).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; pidfds are always close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd as libc::c_int)
}

/// Sends `sig` to a process group. ESRCH (nothing left in it) is not an error.
pub fn kill_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: plain system call; a negative pid names a process group.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Sends `sig` to one process. Callers only name children they have not reaped yet, so the pid
/// cannot have been reused.
pub fn kill_pid(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain system call.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Sends `sig` to the process behind a pidfd; false when it has already exited.
pub fn pidfd_signal(pidfd: &OwnedFd, sig: libc::c_int) -> bool {
    // SAFETY: plain system call on a descriptor we own; no siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    ret == 0
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
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

fn waitid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
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
        }));
    }
}

/// Looks at a child without reaping it.
pub fn peek_exit(pid: libc::pid_t) -> ChildState {
    match waitid(pid, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) {
        Ok(None) => ChildState::Running,
        Ok(Some(status)) => ChildState::Exited(status),
        Err(_) => ChildState::Gone,
    }
}

/// Reaps a child known to have exited.
pub fn reap(pid: libc::pid_t) {
    let _ = waitid(pid, libc::WEXITED | libc::WNOHANG);
}

/// Sends as much of `bytes` as the socket takes now, without blocking and without raising
/// SIGPIPE in the host. Ok(0) when its buffer is full; Err when the peer is gone.
pub fn send_some(fd: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `bytes`.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(err),
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
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return ReadResult::Data(n as usize);
        }
        if n == 0 {
            return ReadResult::Closed;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return ReadResult::WouldBlock,
            _ => return ReadResult::Closed,
        }
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system call.
        Ok(Epoll {
            fd: owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?,
        })
    }

    /// Watches `fd` for input (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, token, false)
    }

    /// Watches `fd` for input, and for room to write while `write` is true.
    pub fn modify(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, token, write)
    }

    fn control(&self, op: libc::c_int, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        let mut events = libc::EPOLLIN as u32;
        if write {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    pub fn remove(&self, fd: RawFd) {
        // SAFETY: plain system call; a descriptor that is not registered gives ENOENT.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout_ms` (-1 = forever) and returns the tokens that are ready.
    pub fn wait(&self, events: &mut Vec<libc::epoll_event>, timeout_ms: i32) -> usize {
        events.clear();
        let cap = events.capacity().max(1);
        events.reserve(cap);
        // SAFETY: `events` has room for `cap` entries; the kernel writes at most that many and
        // we only expose the ones it wrote.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                cap as libc::c_int,
                timeout_ms,
            )
        };
        let n = n.max(0) as usize;
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { events.set_len(n) };
        n
    }
}
