//! One supervised worker, as the supervisor tracks it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Readiness;
use crate::events::{EventKind, StopMode};
use crate::lines::LineReader;
use crate::policy::Backoff;
use crate::sys::{self, Epoll, ExitStatus};

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running, not asked to stop.
    Running,
    /// Asked to stop; the mode of the latest request.
    Stopping(StopMode),
    /// Ended unasked; waiting for its respawn.
    Restarting,
    /// Ended unasked, reaped, and not to be respawned.
    Failed,
}

/// The supervisor's end of a worker's control socket: the reader of incoming lines, and
/// outgoing bytes the worker has not taken yet.
#[derive(Debug)]
pub struct ControlChannel {
    pub fd: OwnedFd,
    pub reader: LineReader,
    pub outbox: Vec<u8>,
}

#[derive(Debug)]
pub struct Worker {
    pub group: String,
    pub index: u32,
    pub id: String,
    pub pid: libc::pid_t,
    /// Present when the kernel gave us one; without it the monitor polls for the exit.
    pub pidfd: Option<OwnedFd>,
    /// Present while the channel is open.
    pub channel: Option<ControlChannel>,
    /// Whether the worker was spawned with a control channel (its stop strategy).
    pub has_stop_event: bool,
    pub readiness: Readiness,
    pub heartbeat_timeout: Option<Duration>,
    pub stop_signal: libc::c_int,
    pub started_at_ms: u64,
    pub ready: bool,
    pub phase: Phase,
    /// How the latest process of this worker ended.
    pub last_exit: ExitStatus,
    /// Why the supervisor killed it, when it did (a timeout).
    pub failure_reason: Option<&'static str>,
    pub restarts: u32,
    pub backoff: Backoff,
    pub last_heartbeat: Option<Instant>,
    pub last_heartbeat_ms: Option<u64>,
}

/// One worker entry of the snapshot JSON.
#[derive(Debug, Serialize)]
pub struct WorkerSnapshot<'a> {
    pub worker_id: &'a str,
    pub pid: i32,
    pub os_pid: i32,
    pub alive: bool,
    pub ready: bool,
    pub state: &'static str,
    pub pgid: i32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub has_stop_event: bool,
    pub stop_strategy: &'static str,
    pub control_channel: &'static str,
    pub started_at_ms: u64,
    pub restarts: u32,
    pub last_heartbeat_ms: Option<u64>,
}

impl Worker {
    pub fn stop_strategy(&self) -> &'static str {
        if self.has_stop_event {
            "event"
        } else {
            "terminate_fallback"
        }
    }

    pub fn control_channel_name(&self) -> &'static str {
        if self.has_stop_event {
            "socketpair"
        } else {
            "unavailable"
        }
    }

    /// Whether a process of this worker is running (or not yet reaped).
    pub fn alive(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Stopping(_))
    }

    pub fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Running if self.ready => "ready",
            Phase::Running => "starting",
            Phase::Stopping(_) => "stopping",
            Phase::Restarting => "restarting",
            Phase::Failed => "failed",
        }
    }

    pub fn snapshot(&self) -> WorkerSnapshot<'_> {
        let exit = if self.alive() {
            ExitStatus::default()
        } else {
            self.last_exit
        };
        WorkerSnapshot {
            worker_id: &self.id,
            pid: self.pid,
            os_pid: self.pid,
            alive: self.alive(),
            ready: self.ready,
            state: self.state_name(),
            // Each worker leads its own process group.
            pgid: self.pid,
            exit_code: exit.code,
            signal: exit.signal,
            has_stop_event: self.has_stop_event,
            stop_strategy: self.stop_strategy(),
            control_channel: self.control_channel_name(),
            started_at_ms: self.started_at_ms,
            restarts: self.restarts,
            last_heartbeat_ms: self.last_heartbeat_ms,
        }
    }

    /// Signals the worker's whole process group, and the worker itself in case it left the
    /// group. Only called before the monitor has seen the exit; through the pidfd when there
    /// is one, so that even a worker the kernel reaped early (a host ignoring SIGCHLD) cannot
    /// have its pid reused under us.
    pub fn signal(&self, sig: libc::c_int) {
        if !self.alive() {
            return;
        }
        match &self.pidfd {
            Some(pidfd) => {
                if sys::pidfd_signal(pidfd, sig) {
                    // The pidfd proves the process still exists, so its group id is its own.
                    sys::kill_group(self.pid, sig);
                }
            }
            None => {
                sys::kill_group(self.pid, sig);
                sys::kill_pid(self.pid, sig);
            }
        }
    }

    /// Queues `line` (plus `\n`) for the worker and sends what its socket takes now; the rest
    /// goes when the monitor sees room. False when there is no usable channel.
    pub fn send(&mut self, epoll: &Epoll, token: u64, line: &[u8]) -> bool {
        let Some(ch) = self.channel.as_mut() else {
            return false;
        };
        ch.outbox.extend_from_slice(line);
        ch.outbox.push(b'\n');
        self.flush(epoll, token)
    }

    /// Sends queued bytes; watches for room to write while some remain. False when the peer
    /// is gone (the channel is then closed).
    pub fn flush(&mut self, epoll: &Epoll, token: u64) -> bool {
        let Some(ch) = self.channel.as_mut() else {
            return false;
        };
        let was_waiting = !ch.outbox.is_empty();
        while !ch.outbox.is_empty() {
            match sys::send_some(&ch.fd, &ch.outbox) {
                Ok(0) => break,
                Ok(n) => {
                    ch.outbox.drain(..n);
                }
                Err(_) => {
                    self.close_channel(epoll);
                    return false;
                }
            }
        }
        if was_waiting || !ch.outbox.is_empty() {
            let _ = epoll.modify(ch.fd.as_raw_fd(), token, !ch.outbox.is_empty());
        }
        true
    }

    /// Closes the supervisor's end of the channel. The descriptor leaves the epoll set
    /// explicitly: a copy held by a child the host forked would otherwise keep it registered.
    pub fn close_channel(&mut self, epoll: &Epoll) {
        if let Some(ch) = self.channel.take() {
            epoll.remove(ch.fd.as_raw_fd());
        }
    }

    /// Closes the pidfd, leaving the epoll set explicitly (see `close_channel`).
    pub fn close_pidfd(&mut self, epoll: &Epoll) {
        if let Some(fd) = self.pidfd.take() {
            epoll.remove(fd.as_raw_fd());
        }
    }

    /// Asks the worker to stop over its channel; false when there is no usable channel.
    pub fn send_stop(&mut self, epoll: &Epoll, token: u64, drain: bool) -> bool {
        let line: &[u8] = if drain { b"STOP DRAIN" } else { b"STOP NOW" };
        self.send(epoll, token, line)
    }

    fn who(&self) -> (String, String) {
        (self.group.clone(), self.id.clone())
    }

    pub fn spawned_event(&self) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerSpawned {
            group_name,
            worker_id,
            pid: self.pid,
            stop_strategy: self.stop_strategy(),
            control_channel: self.control_channel_name(),
            readiness: self.readiness.as_str(),
        }
    }

    pub fn ready_event(&self) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerReady {
            group_name,
            worker_id,
            pid: self.pid,
        }
    }

    pub fn stopping_event(&self, mode: StopMode) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerStopping {
            group_name,
            worker_id,
            pid: self.pid,
            mode,
        }
    }

    pub fn stopped_event(&self, mode: StopMode, status: ExitStatus) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerStopped {
            group_name,
            worker_id,
            pid: self.pid,
            mode,
            exit_code: status.code,
            signal: status.signal,
        }
    }

    pub fn failed_event(&self, reason: &'static str, status: ExitStatus) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerFailed {
            group_name,
            worker_id,
            pid: self.pid,
            reason,
            exit_code: status.code,
            signal: status.signal,
        }
    }

    pub fn protocol_error_event(&self, error: String) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerProtocolError {
            group_name,
            worker_id,
            pid: self.pid,
            error,
        }
    }
}
