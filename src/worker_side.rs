//! Helpers for a worker process: speak the control protocol over the descriptor named by
//! `MPSUP_CONTROL_FD`.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, MsgFlags};
use nix::sys::stat::{fstat, SFlag};

use crate::error::{Error, Result};
use crate::lines::{Overlong, Splitter};
use crate::protocol::{env, from_worker, to_worker};
use crate::sync::lock;

/// What the supervisor has said so far, and the bytes of an unfinished line.
struct Inbox {
    /// Without a limit: the supervisor's lines are trusted (a `BOOTSTRAP` line may be long).
    lines: Splitter,
    closed: bool,
    bootstrap: Option<String>,
    started: bool,
    /// A stop request not yet returned by `wait_stop`: Some(drain).
    stop: Option<bool>,
    /// One thread at a time reads the channel, without the lock; the others wait on `ARRIVED`.
    reading: bool,
}

static INBOX: Mutex<Inbox> = Mutex::new(Inbox {
    lines: Splitter::new(usize::MAX, Overlong::Cut),
    closed: false,
    bootstrap: None,
    started: false,
    stop: None,
    reading: false,
});

/// Notified whenever the reading thread has read something (or given up reading).
static ARRIVED: Condvar = Condvar::new();

impl Inbox {
    /// Takes in bytes the supervisor sent: each complete line is heard at once.
    fn receive(&mut self, bytes: &[u8]) {
        let mut lines = Vec::new();
        // Never fails: no line is over the limit.
        let _ = self.lines.feed(bytes, &mut |l| lines.push(l.to_vec()));
        for line in lines {
            self.hear(&line);
        }
    }

    fn hear(&mut self, line: &[u8]) {
        match line {
            to_worker::STOP_DRAIN => self.stop = Some(true),
            to_worker::STOP_NOW => self.stop = Some(false),
            to_worker::START => self.started = true,
            _ => {
                if let Some(json) = line.strip_prefix(to_worker::BOOTSTRAP_PREFIX) {
                    self.bootstrap = Some(String::from_utf8_lossy(json).into_owned());
                }
            }
        }
    }
}

/// Reads from the channel until `done` gives an answer, the channel closes (`done` sees that
/// too) or the timeout passes (None).
fn wait_for<T>(timeout_seconds: f64, done: impl Fn(&mut Inbox) -> Option<T>) -> Result<Option<T>> {
    if timeout_seconds.is_nan() {
        return Err(Error::InvalidArgument("timeout_seconds is NaN".into()));
    }
    let fd = control_socket()?;
    let deadline = (timeout_seconds >= 0.0)
        .then(|| Instant::now() + std::time::Duration::from_secs_f64(timeout_seconds.min(1e9)));
    let mut inbox = lock(&INBOX);
    loop {
        if let Some(answer) = done(&mut inbox) {
            return Ok(Some(answer));
        }
        if inbox.closed {
            return Ok(None);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(None);
        }
        if inbox.reading {
            // Another thread reads; it tells us when something came.
            inbox = match left {
                None => ARRIVED.wait(inbox).unwrap_or_else(|p| p.into_inner()),
                Some(l) => {
                    ARRIVED
                        .wait_timeout(inbox, l)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            continue;
        }
        inbox.reading = true;
        drop(inbox);
        let got = read_once(fd, left);
        inbox = lock(&INBOX);
        inbox.reading = false;
        ARRIVED.notify_all();
        match got {
            Ok(Some(bytes)) if bytes.is_empty() => inbox.closed = true,
            Ok(Some(bytes)) => inbox.receive(&bytes),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits up to `left` (None: without limit) for the channel to be readable and reads what is
/// there: Some(bytes), empty at end of file; None when nothing came in time.
fn read_once(fd: RawFd, left: Option<std::time::Duration>) -> Result<Option<Vec<u8>>> {
    let wait_ms = left.map_or(-1, |l| {
        l.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: the descriptor named by the environment, checked to be an open socket, is only
    // borrowed for these two calls.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let timeout = PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::NONE);
    let ready = match poll(&mut [PollFd::new(borrowed, PollFlags::POLLIN)], timeout) {
        Ok(n) => n,
        Err(Errno::EINTR) => return Ok(None),
        Err(e) => return Err(Error::os("poll on the control channel", e.into())),
    };
    if ready == 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; 16 * 1024];
    // MSG_DONTWAIT: never block, even if the data went elsewhere meanwhile (a worker's child
    // reading the same socket).
    let n = match socket::recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT) {
        Ok(n) => n,
        Err(Errno::EINTR | Errno::EAGAIN) => return Ok(None),
        // A failure is not an end of file: it must not read as "the supervisor is gone".
        Err(e) => return Err(Error::os("reading the control channel", e.into())),
    };
    buf.truncate(n);
    Ok(Some(buf))
}

/// What `wait_stop` learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Nothing within the timeout.
    None,
    /// `STOP DRAIN`: finish in-flight work, then exit.
    Drain,
    /// `STOP NOW`: exit at once.
    Now,
    /// End of file: the supervisor is gone; exit.
    SupervisorGone,
}

/// The control descriptor from the environment.
pub fn control_fd() -> Result<RawFd> {
    let value = std::env::var(env::CONTROL_FD).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} is not set: this worker has no control channel",
            env::CONTROL_FD
        ))
    })?;
    value
        .trim()
        .parse::<RawFd>()
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} is not a descriptor: '{value}'",
                env::CONTROL_FD
            ))
        })
}

/// The control descriptor from the environment, checked to be an open socket: a closed
/// descriptor, a file, a directory, `/dev/null` or a pipe is no control channel, and would
/// otherwise read as an end of file ("the supervisor is gone") or as silence.
pub fn control_socket() -> Result<RawFd> {
    let fd = control_fd()?;
    // SAFETY: only borrowed for the fstat; a closed number fails with EBADF.
    let st = match fstat(unsafe { BorrowedFd::borrow_raw(fd) }) {
        Ok(st) => st,
        Err(err) => {
            return Err(Error::InvalidArgument(format!(
                "{} {fd} is not an open descriptor: {}",
                env::CONTROL_FD,
                std::io::Error::from(err)
            )))
        }
    };
    let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFSOCK => return Ok(fd),
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFIFO => "a pipe or FIFO",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "of an unknown kind",
    };
    Err(Error::InvalidArgument(format!(
        "{} {fd} is {kind}, not a socket: this worker has no usable control channel",
        env::CONTROL_FD
    )))
}

/// Sends one line (a `\n` is added) to the supervisor.
pub fn send_line(line: &str) -> Result<()> {
    send_words(line.as_bytes())
}

/// Sends one line of the protocol's words (a `\n` is added).
fn send_words(line: &[u8]) -> Result<()> {
    let fd = control_socket()?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line);
    bytes.push(b'\n');
    let mut sent = 0;
    while sent < bytes.len() {
        match socket::send(fd, &bytes[sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::os("writing to the control channel", e.into())),
        }
    }
    Ok(())
}

/// Tells the supervisor this worker is ready (readiness `"notify"`).
pub fn notify_ready() -> Result<()> {
    send_words(from_worker::READY)
}

/// Tells the supervisor this worker is alive (`heartbeat_timeout_ms`).
pub fn heartbeat() -> Result<()> {
    send_words(from_worker::HEARTBEAT)
}

/// Waits up to `timeout_seconds` (negative: without limit) for a stop request.
pub fn wait_stop(timeout_seconds: f64) -> Result<StopRequest> {
    let answer = wait_for(timeout_seconds, |inbox| match inbox.stop.take() {
        Some(true) => Some(StopRequest::Drain),
        Some(false) => Some(StopRequest::Now),
        None if inbox.closed => Some(StopRequest::SupervisorGone),
        None => None,
    })?;
    Ok(answer.unwrap_or(StopRequest::None))
}

/// Waits for `START` (groups with `start_gate`); false on timeout or when the channel closed.
pub fn wait_start(timeout_seconds: f64) -> Result<bool> {
    Ok(wait_for(timeout_seconds, |inbox| inbox.started.then_some(()))?.is_some())
}

/// Waits for the `BOOTSTRAP` payload (groups with `bootstrap`): its compact JSON text.
pub fn bootstrap(timeout_seconds: f64) -> Result<Option<String>> {
    wait_for(timeout_seconds, |inbox| inbox.bootstrap.clone())
}
