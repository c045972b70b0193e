//! The transitions the kernel drives: a process was spawned or could not be, it exited, it sent
//! a line, a deadline passed. Each updates the state, queues events and records effects.

use std::time::{Duration, Instant};

use crate::config::Readiness as Mode;
use crate::core::effects::Effect;
use crate::core::policy::{self, Decision, Ending};
use crate::core::state::State;
use crate::core::timers::Timer;
use crate::core::worker::{ExitStatus, Key, Phase, Role};
use crate::events::{EventKind, ExitReason, GroupFailReason, StopMode, StopStrategy};
use crate::protocol::{from_worker, to_worker};
use crate::snapshot::LastExit;

/// A process the spawner made for a worker.
#[derive(Debug, Clone)]
pub struct Spawned {
    pub pid: i32,
    pub has_channel: bool,
    /// Why the control channel could not be made, when it could not.
    pub channel_error: Option<String>,
    pub at: Instant,
    pub at_ms: u64,
}

/// A line a worker sent on its control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Ready,
    Heartbeat,
    Other,
}

impl Line {
    pub fn parse(line: &[u8]) -> Line {
        match line.strip_suffix(b"\r").unwrap_or(line) {
            from_worker::READY => Line::Ready,
            from_worker::HEARTBEAT => Line::Heartbeat,
            // Every other line is ignored, as the protocol says.
            _ => Line::Other,
        }
    }
}

impl State {
    /// Takes a new process for worker `key`. False when the worker no longer wants one (it was
    /// stopped meanwhile): the caller then kills and reaps the process, which nobody announced.
    pub fn adopt(&mut self, key: Key, s: Spawned) -> bool {
        if self.closed {
            return false;
        }
        let Some(w) = self.workers.get_mut(&key) else {
            return false;
        };
        if w.phase != Phase::Spawning {
            return false;
        }
        let spec = &w.plan.spec;
        w.pid = s.pid;
        w.has_channel = s.has_channel;
        // sd_notify needs no control channel.
        w.readiness = if s.has_channel || matches!(spec.readiness, Mode::SdNotify | Mode::Probe) {
            spec.readiness
        } else {
            Mode::Warmup
        };
        w.notify = None;
        w.extend_until = None;
        w.stderr_tail = None;
        w.reload = None;
        w.phase = Phase::Starting;
        w.spawned_at = Some(s.at);
        w.started_at_ms = s.at_ms;
        w.status = None;
        let warmup = (w.readiness == Mode::Warmup).then(|| Duration::from_millis(spec.warmup_ms));
        let ready_timeout =
            (spec.ready_timeout_ms > 0).then(|| Duration::from_millis(spec.ready_timeout_ms));
        let bootstrap = spec
            .bootstrap
            .as_ref()
            .filter(|_| s.has_channel)
            .map(|b| [to_worker::BOOTSTRAP_PREFIX, b.as_str().as_bytes()].concat());
        let surge = w.role == Role::Surge;
        let group = w.group.clone();
        if let Some(error) = s.channel_error {
            self.events.push(EventKind::StopEventUnavailable {
                group_name: w.group.clone(),
                worker_id: w.id.clone(),
                generation: w.generation,
                fallback: StopStrategy::TerminateFallback,
                error,
            });
        }
        let event = w.spawned_event();
        self.events.push(event);
        self.start_probes(key, s.at);
        if let Some(warmup) = warmup {
            self.arm(s.at + warmup, key, Timer::Warmup);
        }
        if let Some(timeout) = ready_timeout {
            self.arm(s.at + timeout, key, Timer::ReadyTimeout);
        }
        self.arm_recycling(key, s.at);
        if surge {
            if let Some(timeout) = self.rollout_ready_timeout(&group) {
                self.arm(s.at + timeout, key, Timer::RolloutReady);
            }
        }
        if let Some(line) = bootstrap {
            self.effect(Effect::Send { key, line });
        }
        // A worker spawned after its group was started gets START at once: it waits for it
        // (after READY) like the first ones did, and the host cannot send it again.
        if self.groups.get(&group).is_some_and(|g| g.work_started) {
            self.effect(Effect::Send {
                key,
                line: to_worker::START.to_vec(),
            });
        }
        true
    }

    /// No process could be spawned for worker `key` (a respawn, a scale-up or a rollout).
    pub fn spawn_failed(&mut self, key: Key, error: String, now: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if w.phase != Phase::Spawning {
            return;
        }
        let event = w.spawn_failed_event(error.clone());
        self.events.push(event);
        if w.role == Role::Surge {
            let (group, id) = (w.group.clone(), w.id.clone());
            self.remove(key);
            self.fail_rollout(&group, &id, format!("spawn_failed: {error}"), now);
        } else if w.role == Role::Replacement {
            self.replacement_failed(key, now);
        } else {
            // No process: the snapshot must not show the dead one's pid as the worker's.
            w.pid = 0;
            // Counted as a failure: the backoff grows, and so does the group's intensity.
            w.phase = Phase::Starting;
            self.apply_policy(key, Ending::Failure, now);
        }
    }

    /// A worker's process has exited and been reaped.
    pub fn exited(&mut self, key: Key, status: ExitStatus, now: Instant, now_ms: u64) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        w.exit = status;
        let reason = match w.phase {
            Phase::Stopping(mode) => {
                w.last_exit = Some(last_exit(status, ExitReason::Stopped, now_ms));
                let event = w.stopped_event(mode, status);
                self.events.push(event);
                if !self.respawn_stopped(key, now) {
                    self.remove(key);
                }
                return;
            }
            Phase::Starting | Phase::Ready { .. } if status.oom_killed => ExitReason::OomKilled,
            Phase::Starting | Phase::Ready { .. } => ExitReason::Exited,
            Phase::Killed(reason) => reason,
            Phase::Spawning | Phase::Restarting | Phase::Failed => return,
        };
        w.last_exit = Some(last_exit(status, reason, now_ms));
        let event = w.failed_event(reason, status);
        self.events.push(event);
        if w.role == Role::Surge {
            let (group, id) = (w.group.clone(), w.id.clone());
            w.phase = Phase::Failed;
            self.remove(key);
            self.fail_rollout(&group, &id, reason.to_string(), now);
            return;
        }
        if w.role == Role::Replacement {
            self.replacement_failed(key, now);
            return;
        }
        let ending = if reason == ExitReason::Exited && status.code == Some(0) {
            Ending::Clean
        } else {
            Ending::Failure
        };
        let group = w.group.clone();
        self.dependency_ended(&group, now);
        self.apply_policy(key, ending, now);
    }

    /// Respawn, leave failed, or fail the whole group, as the restart policy says.
    fn apply_policy(&mut self, key: Key, ending: Ending, now: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        w.phase = Phase::Failed;
        let Some(group) = self
            .groups
            .get_mut(&w.group)
            .filter(|g| g.started && !g.failed)
        else {
            return;
        };
        let spec = w.plan.spec.restart_spec();
        match policy::decide(&spec, ending, &mut w.backoff, &mut group.intensity, now) {
            Decision::Leave if ending == Ending::Clean => {
                let group = w.group.clone();
                self.check_completed(&group);
            }
            Decision::Leave => {}
            Decision::Restart { attempt, delay } => {
                w.phase = Phase::Restarting;
                let event = EventKind::WorkerRestarting {
                    group_name: w.group.clone(),
                    worker_id: w.id.clone(),
                    generation: w.generation,
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                };
                self.events.push(event);
                self.arm(now + delay, key, Timer::Respawn);
                self.restart_the_others(key, delay, now);
            }
            Decision::FailGroup { restarts } => {
                let group = w.group.clone();
                self.fail_group(&group, restarts, spec.window);
            }
        }
    }

    /// Too many respawns: kill every worker of the group; nothing respawns until it is
    /// started again.
    fn fail_group(&mut self, name: &str, restarts: u32, window: Duration) {
        self.events.push(EventKind::GroupFailed {
            group_name: name.to_string(),
            restarts,
            window_ms: window.as_millis() as u64,
            reason: GroupFailReason::TooManyRestarts,
            dependency: None,
        });
        if let Some(g) = self.groups.get_mut(name) {
            g.failed = true;
            g.rollout = None;
        }
        for key in self.keys_of(name) {
            let w = &self.workers[&key];
            match w.phase {
                Phase::Starting | Phase::Ready { .. } | Phase::Killed(_) => self.kill(key),
                Phase::Restarting => {
                    self.workers.get_mut(&key).expect("listed").phase = Phase::Failed;
                }
                Phase::Spawning => {
                    self.remove(key);
                }
                Phase::Stopping(_) | Phase::Failed => {}
            }
        }
    }

    /// A respawn is due: the worker gets a new key and a spawn job.
    fn respawn(&mut self, key: Key) {
        let due = self.workers.get(&key).is_some_and(|w| {
            w.phase == Phase::Restarting
                && self
                    .groups
                    .get(&w.group)
                    .is_some_and(|g| g.started && !g.failed)
        });
        if !due {
            return;
        }
        let mut worker = self.remove(key).expect("checked");
        worker.restarts += 1;
        let job = self.insert_spawning(worker);
        self.effect(Effect::Spawn(job));
    }

    pub fn line(&mut self, key: Key, line: Line, now: Instant, now_ms: u64) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        match line {
            Line::Ready if w.readiness == Mode::Notify => self.mark_ready(key, now),
            Line::Heartbeat => {
                w.last_heartbeat_ms = Some(now_ms);
                if let Phase::Ready { last_heartbeat } = &mut w.phase {
                    *last_heartbeat = now;
                }
            }
            _ => {}
        }
    }

    /// Marks a starting worker ready, once.
    pub fn mark_ready(&mut self, key: Key, now: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        // A worker being killed for a timeout is not ready, whatever it says now.
        if w.phase != Phase::Starting {
            return;
        }
        w.phase = Phase::Ready {
            last_heartbeat: now,
        };
        w.backoff.ready_at = Some(now);
        w.extend_until = None;
        let heartbeat = w.plan.spec.heartbeat_timeout_ms;
        let surge = w.role == Role::Surge;
        let replacement = w.role == Role::Replacement;
        let event = w.ready_event();
        self.events.push(event);
        if heartbeat > 0 {
            self.arm(
                now + Duration::from_millis(heartbeat),
                key,
                Timer::Heartbeat,
            );
        }
        if surge {
            self.replace_slot(key, now);
        }
        if replacement {
            self.replacement_ready(key, now);
        }
    }

    /// The last lines of the captured stderr of worker `key`'s process, which just ended.
    pub fn output_ended(&mut self, key: Key, stderr_tail: Option<Vec<String>>) {
        if let Some(w) = self.workers.get_mut(&key) {
            w.stderr_tail = stderr_tail;
        }
    }

    pub fn protocol_error(&mut self, key: Key, error: String) {
        if let Some(w) = self.workers.get(&key) {
            let event = w.protocol_error_event(error);
            self.events.push(event);
        }
    }

    /// A deadline passed.
    pub fn timer(&mut self, key: Key, timer: Timer, now: Instant) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        // `EXTEND_TIMEOUT_USEC=` moved this deadline on.
        if matches!(
            timer,
            Timer::ReadyTimeout | Timer::StopTimeout | Timer::RolloutReady | Timer::ReloadTimeout
        ) {
            if let Some(until) = w.extend_until.filter(|u| *u > now) {
                self.arm(until, key, timer);
                return;
            }
        }
        match (timer, w.phase) {
            // Only a warm-up worker is made ready by the clock (a `"probe"` one by its probe).
            (Timer::Warmup, Phase::Starting) if w.readiness == Mode::Warmup => {
                self.mark_ready(key, now)
            }
            (Timer::ReadyTimeout, Phase::Starting) => self.fail_for(key, ExitReason::ReadyTimeout),
            (Timer::Heartbeat, Phase::Ready { last_heartbeat }) => {
                let timeout = Duration::from_millis(w.plan.spec.heartbeat_timeout_ms);
                if last_heartbeat + timeout <= now {
                    self.fail_for(key, ExitReason::HeartbeatTimeout);
                } else {
                    self.arm(last_heartbeat + timeout, key, Timer::Heartbeat);
                }
            }
            (Timer::Respawn, Phase::Restarting) => self.respawn(key),
            (Timer::StopTimeout, Phase::Stopping(StopMode::Graceful)) => self.kill(key),
            (Timer::ReloadTimeout, Phase::Ready { .. }) => self.reload_timed_out(key, now),
            (Timer::Lifetime, _) => self.lifetime_due(key, now),
            (Timer::RssSample, _) => self.sample_due(key, now),
            (Timer::RolloutReady, Phase::Spawning | Phase::Starting) if w.role == Role::Surge => {
                let (group, id) = (w.group.clone(), w.id.clone());
                self.fail_rollout(&group, &id, "ready_timeout".into(), now);
            }
            _ => {}
        }
    }

    /// Kills a worker for a timeout; its `worker_failed` (with `reason`) comes when it is reaped.
    pub(crate) fn fail_for(&mut self, key: Key, reason: ExitReason) {
        if let Some(w) = self.workers.get_mut(&key) {
            if matches!(w.phase, Phase::Starting | Phase::Ready { .. }) {
                w.phase = Phase::Killed(reason);
                self.effect(Effect::Signal {
                    key,
                    signal: libc::SIGKILL,
                });
            }
        }
    }
}

fn last_exit(status: ExitStatus, reason: ExitReason, at_ms: u64) -> LastExit {
    LastExit {
        exit_code: status.code,
        signal: status.signal,
        reason,
        at_ms,
    }
}
