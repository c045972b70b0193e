//! Listen sockets: TCP and Unix stream sockets bound for a group's workers, close-on-exec.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, UnixAddr,
};

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// A TCP socket bound to `addr`, not listening yet. `SO_REUSEADDR` always (a restart must not
/// wait for the old connections' TIME_WAIT), `SO_REUSEPORT` when asked.
pub fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io_err)?;
    let fd = super::above_stdio(fd)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io_err)?;
    if reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true).map_err(io_err)?;
    }
    let bound = match addr {
        SocketAddr::V4(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    bound.map_err(io_err)?;
    Ok(fd)
}

/// What identifies the file a Unix socket was bound to, so that only that file is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketFile {
    dev: u64,
    ino: u64,
}

/// A Unix stream socket bound to `path` (`@name`: an abstract name), not listening yet. A
/// socket file left at `path` by an earlier run is replaced; any other file is an error.
pub fn bind_unix(path: &str) -> io::Result<(OwnedFd, Option<SocketFile>)> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io_err)?;
    let fd = super::above_stdio(fd)?;
    if let Some(name) = path.strip_prefix('@') {
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(io_err)?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(io_err)?;
        return Ok((fd, None));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let addr = UnixAddr::new(path).map_err(io_err)?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(io_err)?;
    let m = std::fs::symlink_metadata(path)?;
    Ok((
        fd,
        Some(SocketFile {
            dev: m.dev(),
            ino: m.ino(),
        }),
    ))
}

/// Removes the socket file at `path` if it is still the one `bind_unix` made.
pub fn remove_unix(path: &str, file: SocketFile) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.dev() == file.dev && m.ino() == file.ino {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn listen(fd: &OwnedFd, backlog: u32) -> io::Result<()> {
    let backlog = Backlog::new(backlog.min(i32::MAX as u32) as i32).map_err(io_err)?;
    socket::listen(fd, backlog).map_err(io_err)
}

/// The TCP address `fd` is bound to (the port chosen for port 0).
pub fn tcp_address(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).map_err(io_err)?;
    if let Some(a) = addr.as_sockaddr_in() {
        return Ok(SocketAddr::V4((*a).into()));
    }
    if let Some(a) = addr.as_sockaddr_in6() {
        return Ok(SocketAddr::V6((*a).into()));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a TCP socket",
    ))
}
