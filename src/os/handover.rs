//! What a handover (`supervisor/handover/`) needs of the kernel: the memfd that carries the
//! state across `exec`, turning close-on-exec off and on, descriptors named by number in the new
//! image, and the clock both images share.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::time::{clock_gettime, ClockId};

use super::{above_stdio, io_err};

/// A memfd holding `bytes`, close-on-exec (the caller turns that off once all is ready), read
/// from its start.
pub fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd_create(c"mpsupervisor-handover", MFdFlags::MFD_CLOEXEC).map_err(io_err)?;
    let fd = above_stdio(fd)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

/// Everything `fd` holds, from its start.
pub fn read_all(fd: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let flag = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flag)).map_err(io_err)?;
    Ok(())
}

/// `set_cloexec` on a descriptor named by number, which its owner keeps open.
pub fn set_cloexec_raw(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: only borrowed for F_SETFD; its owner keeps it open for the call.
    set_cloexec(unsafe { BorrowedFd::borrow_raw(fd) }, on)
}

/// Takes ownership of descriptor `fd`, which the previous image left open for this one: checked
/// open, and made close-on-exec again. Never 0, 1 or 2 (the library never held those).
pub fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} cannot be one the library left open"),
        ));
    }
    // SAFETY: only borrowed for F_GETFD, which fails (EBADF) for a closed number.
    fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD)
        .map_err(|e| io::Error::new(io_err(e).kind(), format!("descriptor {fd}: {e}")))?;
    // SAFETY: open (checked above) and, by the handover's contract, nobody else's.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(&owned, true)?;
    Ok(owned)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `Instant`, which an `exec` does not reset, so
/// times written by one image mean the same in the next.
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
