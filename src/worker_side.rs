//! Helpers for a worker process: speak the control protocol over the descriptor named by
//! `MPSUP_CONTROL_FD`.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::supervisor::lock;

/// What the supervisor has said so far, and the bytes of an unfinished line.
struct Inbox {
    buffer: Vec<u8>,
    closed: bool,
    bootstrap: Option<String>,
    started: bool,
    /// A stop request not yet returned by `wait_stop`: Some(drain).
    stop: Option<bool>,
}

static INBOX: Mutex<Inbox> = Mutex::new(Inbox {
    buffer: Vec::new(),
    closed: false,
    bootstrap: None,
    started: false,
    stop: None,
});

impl Inbox {
    fn take_lines(&mut self) {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            match line {
                b"STOP DRAIN" => self.stop = Some(true),
                b"STOP NOW" => self.stop = Some(false),
                b"START" => self.started = true,
                _ => {
                    if let Some(json) = line.strip_prefix(b"BOOTSTRAP ") {
                        self.bootstrap = Some(String::from_utf8_lossy(json).into_owned());
                    }
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
    let fd = control_fd()?;
    let deadline = (timeout_seconds >= 0.0)
        .then(|| Instant::now() + std::time::Duration::from_secs_f64(timeout_seconds.min(1e9)));
    let mut inbox = lock(&INBOX);
    loop {
        inbox.take_lines();
        if let Some(answer) = done(&mut inbox) {
            return Ok(Some(answer));
        }
        if inbox.closed {
            return Ok(None);
        }
        let wait_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::os("poll on the control channel", err));
        }
        if ready == 0 {
            return Ok(None);
        }
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => continue,
                _ => inbox.closed = true,
            }
        } else if n == 0 {
            inbox.closed = true;
        } else {
            inbox.buffer.extend_from_slice(&buf[..n as usize]);
        }
    }
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
    let value = std::env::var("MPSUP_CONTROL_FD").map_err(|_| {
        Error::InvalidArgument(
            "MPSUP_CONTROL_FD is not set: this worker has no control channel".into(),
        )
    })?;
    value
        .trim()
        .parse::<RawFd>()
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("MPSUP_CONTROL_FD is not a descriptor: '{value}'"))
        })
}

/// Sends one line (a `\n` is added) to the supervisor.
pub fn send_line(line: &str) -> Result<()> {
    let fd = control_fd()?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: the pointer and length describe the unsent bytes.
        let n = unsafe {
            libc::send(
                fd,
                bytes[sent..].as_ptr().cast(),
                bytes.len() - sent,
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::os("writing to the control channel", err));
        }
        sent += n as usize;
    }
    Ok(())
}

/// Tells the supervisor this worker is ready (readiness `"notify"`).
pub fn notify_ready() -> Result<()> {
    send_line("READY")
}

/// Tells the supervisor this worker is alive (`heartbeat_timeout_ms`).
pub fn heartbeat() -> Result<()> {
    send_line("HEARTBEAT")
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
