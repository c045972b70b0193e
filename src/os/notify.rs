//! The system calls of sd_notify and output capture: an abstract-namespace datagram socket that
//! learns each sender's credentials, close-on-exec pipes, and a process's group from /proc.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, bind, recvmsg, setsockopt, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

/// A non-blocking, close-on-exec datagram socket bound to the abstract name `name` (without
/// its leading NUL), that receives the sender's credentials with every datagram.
pub fn notify_socket(name: &str) -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(io::Error::from)?;
    let fd = super::above_stdio(fd)?;
    setsockopt(&fd, sockopt::PassCred, &true).map_err(io::Error::from)?;
    let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(io::Error::from)?;
    bind(fd.as_raw_fd(), &addr).map_err(io::Error::from)?;
    Ok(fd)
}

/// One datagram received.
#[derive(Debug)]
pub enum Datagram {
    /// `len` bytes in the buffer; `truncated` when it was longer than the buffer; the sender's
    /// pid when the kernel said it.
    Data {
        len: usize,
        truncated: bool,
        pid: Option<i32>,
    },
    WouldBlock,
}

/// Receives one datagram without blocking. Descriptors passed along (`FDSTORE=1`) are closed
/// at once: the supervisor keeps none.
pub fn recv_datagram(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(libc::ucred, [RawFd; 16]);
    let mut iov = [IoSliceMut::new(buf)];
    loop {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC;
        match recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(msg) => {
                let mut pid = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                            ControlMessageOwned::ScmRights(fds) => {
                                for raw in fds {
                                    // SAFETY: the kernel just installed this descriptor for us
                                    // (closed at once, so its number does not matter).
                                    drop(unsafe { OwnedFd::from_raw_fd(raw) });
                                }
                            }
                            _ => {}
                        }
                    }
                }
                let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
                return Ok(Datagram::Data {
                    len: msg.bytes,
                    truncated,
                    pid,
                });
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(Datagram::WouldBlock),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// A close-on-exec pipe: (read end, non-blocking; write end, numbered above 2 so that the
/// spawn's `dup2` onto 1 or 2 always makes a fresh descriptor).
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let read = super::above_stdio(read)?;
    super::set_nonblocking(&read)?;
    Ok((read, super::above_stdio(write)?))
}

/// The parent and the process group of `pid`, from /proc (None when it is gone).
pub fn parent_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = super::read_text(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    Some((fields.get(1)?.parse().ok()?, fields.get(2)?.parse().ok()?))
}

/// The fields of a /proc/<pid>/stat line after the command name (which may hold spaces and
/// parentheses): field 3 of proc(5) is index 0.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// CPU time (user + system, ms) and resident memory (bytes) of a live process, from one read of
/// /proc/PID/stat.
pub fn process_figures(pid: i32) -> Option<(u64, u64)> {
    let stat = super::read_text(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // utime, stime and rss are fields 14, 15 and 24 of proc(5); `fields` starts at field 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)? + field(15)?;
    let resident = field(24)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some((ticks * 1000 / hz, resident * page_size()))
}

/// Resident memory (bytes) of a live process, the same figure as `process_figures`' but from
/// /proc/PID/statm in one read: no CPU times to gather, for `max_rss_bytes`' samples of every
/// worker.
pub fn resident_bytes(pid: i32) -> Option<u64> {
    let path = format!("/proc/{pid}/statm");
    let fd = super::open_above_stdio(path.as_ref(), nix::fcntl::OFlag::O_RDONLY).ok()?;
    // Seven numbers of pages: a short line, whole in one read.
    let mut buf = [0u8; 160];
    let n = nix::unistd::read(&fd, &mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    let pages: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::{process_figures, resident_bytes};

    #[test]
    fn statm_gives_the_resident_set_that_stat_gives() {
        let pid = std::process::id() as i32;
        let (_, from_stat) = process_figures(pid).expect("stat");
        let from_statm = resident_bytes(pid).expect("statm");
        // The same counter read twice: equal but for what this thread touched between reads.
        let diff = from_stat.abs_diff(from_statm);
        assert!(
            from_statm > 0 && diff < 1 << 20,
            "{from_stat} vs {from_statm}"
        );
        assert_eq!(resident_bytes(i32::MAX), None);
    }
}
