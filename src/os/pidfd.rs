//! pidfds: a descriptor that names one process for as long as it is held, so a signal through
//! it can never reach another process that reused the pid. Raw `libc`: nix has neither call.
//!
//! Depends on std and libc alone: the keeper (`src/bin/mpsup-keeper.rs`) includes this file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pidfd for `pid`, or the error that says pidfds are unavailable (ENOSYS, EPERM, ...).
/// Raw: nix has no pidfd_open.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; pidfds are always close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to the process behind a pidfd. Raw: nix has no pidfd_send_signal. Ok(false)
/// when the process has already been reaped.
pub fn pidfd_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<bool> {
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
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}
