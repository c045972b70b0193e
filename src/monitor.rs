//! The monitor thread: sees worker exits, control-channel lines and warm-up deadlines as they
//! happen, and is the only code that reaps workers.
//!
//! Exits are seen through pidfds in one epoll set. Where `pidfd_open` is denied or missing, a
//! worker's exit is noticed when its control channel closes, and otherwise by polling
//! `waitid(WNOHANG)` on a short tick; no signal handler is ever installed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Readiness;
use crate::lines::MAX_LINE;
use crate::supervisor::{lock, Shared, State, Timer};
use crate::sys::{self, ChildState, ExitStatus, ReadResult};

/// How often workers without a pidfd are checked for an exit.
const POLL_TICK: Duration = Duration::from_millis(10);

/// Epoll tokens: 0 wakes the monitor; workers use `key << 1 | source`.
pub(crate) const WAKE_TOKEN: u64 = 0;
const SOURCE_PIDFD: u64 = 0;
const SOURCE_CHANNEL: u64 = 1;

pub fn pidfd_token(key: u64) -> u64 {
    key << 1 | SOURCE_PIDFD
}

pub fn channel_token(key: u64) -> u64 {
    key << 1 | SOURCE_CHANNEL
}

pub fn run(shared: Arc<Shared>) {
    let mut events = Vec::with_capacity(256);
    loop {
        let timeout = {
            let state = lock(&shared.state);
            if state.shutdown {
                return;
            }
            timeout_ms(&state)
        };
        shared.epoll.wait(&mut events, timeout);
        // A bug in one round must not stop the monitor: workers would never be reaped.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let mut state = lock(&shared.state);
            for ev in &events {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    sys::eventfd_reset(&shared.wake);
                } else if token & 1 == SOURCE_PIDFD {
                    check_exit(&mut state, token >> 1);
                } else {
                    if ev.events & libc::EPOLLOUT as u32 != 0 {
                        state.flush(token >> 1);
                    }
                    if ev.events & !(libc::EPOLLOUT as u32) != 0 {
                        read_channel(&mut state, token >> 1);
                    }
                }
            }
            if state.has_polled() {
                let keys: Vec<u64> = state.polled_keys();
                for key in keys {
                    check_exit(&mut state, key);
                }
            }
            fire_deadlines(&mut state);
            drop(state);
            shared.changed.notify_all();
        }));
    }
}

fn timeout_ms(state: &State) -> i32 {
    let mut timeout: Option<Duration> = state
        .next_deadline()
        .map(|at| at.saturating_duration_since(Instant::now()));
    if state.has_polled() {
        timeout = Some(timeout.map_or(POLL_TICK, |t| t.min(POLL_TICK)));
    }
    // Round up so a deadline is never seen a millisecond early and spun on.
    timeout.map_or(-1, |t| {
        let ms = t.as_micros().div_ceil(1000);
        ms.min(i32::MAX as u128) as i32
    })
}

/// Reaps the worker if it has exited: first its whole process group is killed (the zombie still
/// holds the group id, so it cannot name another group), then the worker is reaped.
pub fn check_exit(state: &mut State, key: u64) {
    let Some(worker) = state.workers.get(&key) else {
        return;
    };
    if !worker.alive() {
        return;
    }
    let status = match sys::peek_exit(worker.pid) {
        ChildState::Running => return,
        ChildState::Exited(status) => {
            sys::kill_group(worker.pid, libc::SIGKILL);
            sys::reap(worker.pid);
            status
        }
        // The kernel reaped it (the host ignores SIGCHLD): the status is lost.
        ChildState::Gone => ExitStatus::default(),
    };
    state.worker_exited(key, status);
}

fn read_channel(state: &mut State, key: u64) {
    let Some(worker) = state.workers.get_mut(&key) else {
        return;
    };
    let Some(channel) = worker.channel.as_mut() else {
        return;
    };
    let mut buf = [0u8; 16 * 1024];
    let mut lines = Vec::new();
    let mut error = None;
    let mut closed = false;
    // Bounded work per wake-up; level-triggered epoll brings us back for the rest.
    for _ in 0..4 {
        match sys::read_some(&channel.fd, &mut buf) {
            ReadResult::Data(n) => {
                if channel.reader.feed(&buf[..n], &mut lines).is_err() {
                    error = Some(format!("line longer than {MAX_LINE} bytes"));
                    break;
                }
            }
            ReadResult::WouldBlock => break,
            ReadResult::Closed => {
                closed = true;
                break;
            }
        }
    }
    for line in lines {
        handle_line(state, key, &line);
    }
    if let Some(error) = error {
        state.protocol_error(key, error);
    } else if closed {
        state.close_channel(key);
        // Often the channel closes because the worker exited: look now rather than wait.
        if state.workers.get(&key).is_some_and(|w| w.pidfd.is_none()) {
            check_exit(state, key);
        }
    }
}

fn handle_line(state: &mut State, key: u64, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let notify = state
        .workers
        .get(&key)
        .is_some_and(|w| w.readiness == Readiness::Notify);
    match line {
        b"READY" if notify => state.mark_ready(key),
        b"HEARTBEAT" => state.heartbeat(key),
        // Every other line is ignored, as the protocol says.
        _ => {}
    }
}

fn fire_deadlines(state: &mut State) {
    let now = Instant::now();
    let mut respawns = Vec::new();
    while let Some((key, timer)) = state.pop_due_timer(now) {
        match timer {
            Timer::Warmup => {
                // Make sure it is still alive, even if its exit is not processed yet.
                check_exit(state, key);
                state.mark_ready(key);
            }
            Timer::ReadyTimeout => state.check_ready_timeout(key),
            Timer::Heartbeat => state.check_heartbeat(key, now),
            Timer::Respawn => respawns.push(key),
        }
    }
    // Together, so that a burst of respawns prepares its spawn attributes once.
    state.respawn_all(&respawns);
}
