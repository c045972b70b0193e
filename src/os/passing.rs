//! Descriptors between this process's descriptor tables: a thread that gives itself a private
//! table (`unshare(CLONE_FILES)`), and `SCM_RIGHTS` messages over a socket pair whose ends sit
//! in different tables.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

/// The most descriptors one message carries.
pub(crate) const MAX_FDS: usize = 64;

/// A connected pair of close-on-exec `SOCK_SEQPACKET` sockets: reliable, ordered, and one message
/// per send.
pub fn message_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    Ok((super::above_stdio(a)?, super::above_stdio(b)?))
}

/// Sends `bytes` and `fds` (numbers in the calling thread's table) as one message, without
/// raising SIGPIPE; `wait`: block while the socket is full (else EAGAIN).
pub fn send(sock: RawFd, bytes: &[u8], fds: &[RawFd], wait: bool) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match socket::sendmsg::<()>(sock, &iov, &cmsgs, flags, None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message into `buf` (`wait`: blocking, else `WouldBlock` when none is queued):
/// its length and the descriptors it carried, now close-on-exec numbers of the calling thread's
/// table. Descriptors that did not fit in this table (EMFILE) are missing from the end of the
/// list: the kernel closed them.
///
/// Raw `recvmsg`: nix's answers only `ENOBUFS` when part of the descriptors could not be
/// installed (`MSG_CTRUNC`), and the ones that were installed would leak.
pub fn receive(sock: RawFd, buf: &mut [u8], wait: bool) -> io::Result<(usize, Vec<OwnedFd>)> {
    let flags = libc::MSG_CMSG_CLOEXEC | if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() * 8;
        // SAFETY: `msg` describes valid buffers of the given sizes.
        let n = unsafe { libc::recvmsg(sock, &mut msg, flags) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let mut fds = Vec::new();
        // SAFETY: walking the control messages the kernel wrote into `control`, bounded by
        // msg_controllen; each SCM_RIGHTS payload holds cmsg_len - CMSG_LEN(0) bytes of ints.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let bytes = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        // One that cannot be moved above 2 (EMFILE) is closed with the rest after it, as the
        // kernel does with those that did not fit.
        let fds = fds.into_iter().map_while(|fd| super::above_stdio(fd).ok());
        return Ok((n as usize, fds.collect()));
    }
}

/// Gives the calling thread a private copy of the process's descriptor table: from now on what it
/// opens and closes is invisible to the other threads, and theirs to it. Threads it creates
/// share its table.
pub fn unshare_descriptor_table() -> io::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_FILES).map_err(io::Error::from)
}

/// The descriptors open in the calling thread's own table (`/proc/thread-self/fd`, not
/// `/proc/self/fd`, which shows the main thread's).
pub fn thread_descriptors() -> io::Result<Vec<RawFd>> {
    let listing: Vec<RawFd> = super::list_dir("/proc/thread-self/fd")?
        .into_iter()
        .filter_map(|(name, _)| name.to_str()?.parse().ok())
        .collect();
    Ok(listing)
}

/// Closes descriptor `fd` of the calling thread's table, one that nothing owns as an `OwnedFd`
/// there (a copy of another table's descriptor, which that table keeps).
pub fn close_number(fd: RawFd) {
    let _ = nix::unistd::close(fd);
}

/// Whether `fd` is open in the calling thread's table.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: only borrowed for F_GETFD.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// Gives the calling thread a descriptor table of its own that holds only `keep` and
/// `/dev/null` on 0, 1 and 2, so that none of its opens ever takes, even for a moment, a number
/// the host closed (0, 1, 2; a host that then `dup2`s its stdout back would have it closed under
/// it). The private copies of the process's other descriptors are closed: holding one would keep
/// a pipe's writer, a socket or a pidfd alive behind the host's back. False (and the table stays
/// the process's) where it cannot be had; without `/dev/null` the copies of 0, 1 and 2 stay.
pub fn enter_private_table(keep: &[RawFd]) -> bool {
    // Checked first: without a listing the copy could not be emptied.
    if thread_descriptors().is_err() || unshare_descriptor_table().is_err() {
        return false;
    }
    for fd in thread_descriptors().unwrap_or_default() {
        if fd > 2 && !keep.contains(&fd) {
            close_number(fd);
        }
    }
    null_stdio();
    true
}

/// Puts `/dev/null` (close-on-exec) on descriptors 0, 1 and 2 of the calling thread's table, so
/// that what it opens later never takes those numbers. False when `/dev/null` cannot be opened.
pub fn null_stdio() -> bool {
    let Ok(null) = nix::fcntl::open(
        c"/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    for target in 0..=2 {
        if null.as_raw_fd() == target {
            continue;
        }
        // SAFETY: `target` is 0, 1 or 2 of this thread's private table, owned by nothing here.
        let mut target_fd = unsafe { OwnedFd::from_raw_fd(target) };
        let done = nix::unistd::dup3(&null, &mut target_fd, nix::fcntl::OFlag::O_CLOEXEC);
        // The descriptor stays open: it is the placeholder.
        std::mem::forget(target_fd);
        if done.is_err() {
            return false;
        }
    }
    if null.as_raw_fd() <= 2 {
        // It is one of the placeholders itself.
        std::mem::forget(null);
    }
    true
}
