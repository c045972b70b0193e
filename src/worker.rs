//! One supervised worker process, as the supervisor tracks it.

use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::Serialize;

use crate::config::Readiness;
use crate::events::{EventKind, StopMode};
use crate::sys::{self, ExitStatus};

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running, not asked to stop.
    Running,
    /// Asked to stop; the mode of the latest request.
    Stopping(StopMode),
    /// Ended without being asked, and reaped.
    Failed(ExitStatus),
}

/// The supervisor's end of a worker's control socket and the bytes of an unfinished line.
#[derive(Debug)]
pub struct ControlChannel {
    pub fd: OwnedFd,
    pub partial: Vec<u8>,
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
    pub warmup: Duration,
    pub stop_signal: libc::c_int,
    pub started_at_ms: u64,
    pub ready: bool,
    pub phase: Phase,
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

    pub fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Running if self.ready => "ready",
            Phase::Running => "starting",
            Phase::Stopping(_) => "stopping",
            Phase::Failed(_) => "failed",
        }
    }

    pub fn snapshot(&self) -> WorkerSnapshot<'_> {
        let exit = match self.phase {
            Phase::Failed(status) => status,
            _ => ExitStatus::default(),
        };
        WorkerSnapshot {
            worker_id: &self.id,
            pid: self.pid,
            os_pid: self.pid,
            alive: !matches!(self.phase, Phase::Failed(_)),
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
        }
    }

    /// Signals the worker's whole process group, and the worker itself in case it left the
    /// group (`setsid`). Only called before the worker is reaped, so its pid is still its own.
    pub fn signal(&self, sig: libc::c_int) {
        sys::kill_group(self.pid, sig);
        sys::kill_pid(self.pid, sig);
    }

    /// Asks the worker to stop over its channel; false when there is no usable channel.
    pub fn send_stop(&mut self, drain: bool) -> bool {
        let line: &[u8] = if drain {
            b"STOP DRAIN\n"
        } else {
            b"STOP NOW\n"
        };
        match &self.channel {
            Some(ch) => sys::send_line(&ch.fd, line),
            None => false,
        }
    }

    pub fn ready_event(&self) -> EventKind {
        EventKind::WorkerReady {
            group_name: self.group.clone(),
            worker_id: self.id.clone(),
            pid: self.pid,
        }
    }

    pub fn stopping_event(&self, mode: StopMode) -> EventKind {
        EventKind::WorkerStopping {
            group_name: self.group.clone(),
            worker_id: self.id.clone(),
            pid: self.pid,
            mode,
        }
    }

    pub fn stopped_event(&self, mode: StopMode, status: ExitStatus) -> EventKind {
        EventKind::WorkerStopped {
            group_name: self.group.clone(),
            worker_id: self.id.clone(),
            pid: self.pid,
            mode,
            exit_code: status.code,
            signal: status.signal,
        }
    }

    pub fn failed_event(&self, reason: &'static str, status: ExitStatus) -> EventKind {
        EventKind::WorkerFailed {
            group_name: self.group.clone(),
            worker_id: self.id.clone(),
            pid: self.pid,
            reason,
            exit_code: status.code,
            signal: status.signal,
        }
    }

    pub fn protocol_error_event(&self, error: String) -> EventKind {
        EventKind::WorkerProtocolError {
            group_name: self.group.clone(),
            worker_id: self.id.clone(),
            pid: self.pid,
            error,
        }
    }
}
