//! TCP and HTTP probes: one non-blocking socket each, moved on by the probe thread's epoll set
//! whenever it is ready. A TCP probe succeeds once the connection is accepted; an HTTP probe
//! then sends `GET <path> HTTP/1.0` and reads until `httparse` has the status line.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, getsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage,
};

use crate::os;

/// The most bytes of a response read before its status line must be complete.
const MAX_RESPONSE: usize = 16 * 1024;

/// Where a run is after a step.
pub(super) enum Step {
    /// Waiting for the socket; `write`: for room to write (else for input).
    Wait {
        write: bool,
    },
    Done(Result<(), String>),
}

/// The HTTP half of a run.
struct Http {
    request: Vec<u8>,
    sent: usize,
    response: Vec<u8>,
}

/// One TCP or HTTP probe in flight.
pub(super) struct NetRun {
    pub(super) fd: OwnedFd,
    connected: bool,
    http: Option<Http>,
}

fn failed(what: &str, e: Errno) -> Step {
    Step::Done(Err(format!("{what}: {}", e.desc())))
}

impl NetRun {
    /// Opens a non-blocking socket to `address` and starts connecting; with `http`
    /// (`Host:` and path), an HTTP request follows. Err: the probe failed at once.
    pub(super) fn start(
        address: SocketAddr,
        http: Option<(&str, &str)>,
    ) -> Result<(NetRun, Step), String> {
        let family = match address {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket::socket(family, SockType::Stream, flags, None)
            .map_err(|e| format!("socket: {}", e.desc()))?;
        let fd = os::above_stdio(fd).map_err(|e| format!("socket: {e}"))?;
        let connected = match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(address)) {
            Ok(()) => true,
            Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => false,
            Err(e) => return Err(format!("connect: {}", e.desc())),
        };
        let http = http.map(|(host, path)| Http {
            request: format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: mpsupervisor\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_bytes(),
            sent: 0,
            response: Vec::new(),
        });
        let mut run = NetRun {
            fd,
            connected,
            http,
        };
        let step = if connected {
            run.step(true, false)
        } else {
            Step::Wait { write: true }
        };
        Ok((run, step))
    }

    /// Moves the run on once its socket is ready.
    pub(super) fn step(&mut self, writable: bool, readable: bool) -> Step {
        if !self.connected {
            match getsockopt(&self.fd.as_fd(), sockopt::SocketError) {
                Ok(0) if writable => self.connected = true,
                Ok(0) => return Step::Wait { write: true },
                Ok(e) => return failed("connect", Errno::from_raw(e)),
                Err(e) => return failed("connect", e),
            }
        }
        let Some(http) = &mut self.http else {
            return Step::Done(Ok(()));
        };
        while http.sent < http.request.len() {
            let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
            match socket::send(self.fd.as_raw_fd(), &http.request[http.sent..], flags) {
                Ok(n) => http.sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Step::Wait { write: true },
                Err(e) => return failed("HTTP: send", e),
            }
        }
        if !readable && http.response.is_empty() {
            return Step::Wait { write: false };
        }
        http.read(&self.fd)
    }
}

impl Http {
    /// Reads what came and looks for the status line.
    fn read(&mut self, fd: &OwnedFd) -> Step {
        let mut buf = [0u8; 4096];
        loop {
            match os::read_some(fd, &mut buf) {
                os::ReadResult::Data(n) => {
                    let room = MAX_RESPONSE - self.response.len();
                    self.response.extend_from_slice(&buf[..n.min(room)]);
                    if let Some(done) = self.status(false) {
                        return done;
                    }
                }
                os::ReadResult::WouldBlock => return Step::Wait { write: false },
                os::ReadResult::Closed => {
                    return self.status(true).unwrap_or_else(|| {
                        Step::Done(Err(
                            "HTTP: the connection closed before the status line".into()
                        ))
                    })
                }
            }
        }
    }

    /// The result once the status is known (or can no longer be: `ended`, or too much came).
    fn status(&self, ended: bool) -> Option<Step> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(&self.response);
        let full = self.response.len() >= MAX_RESPONSE;
        let code = match parsed {
            Ok(httparse::Status::Complete(_)) => response.code,
            // The headers are still coming: the status line may be enough already.
            Ok(httparse::Status::Partial) if ended || full => response.code,
            Ok(httparse::Status::Partial) => return None,
            Err(httparse::Error::TooManyHeaders) => response.code,
            Err(e) => return Some(Step::Done(Err(format!("HTTP: malformed response: {e}")))),
        };
        Some(Step::Done(match code {
            Some(code) if (200..400).contains(&code) => Ok(()),
            Some(code) => Err(format!("HTTP {code}")),
            None => Err("HTTP: no status line".into()),
        }))
    }
}
