//! One group at a time: a signal to every worker of a group (`signal_group`), and reloads
//! (`reload_groups`) that an `sd_notify` worker confirms with `RELOADING=1` then `READY=1`
//! (systemd's `Type=notify-reload`), waited for by `wait_ready`.

use std::time::{Duration, Instant};

use crate::config::{KillMode, Readiness};
use crate::core::effects::Effect;
use crate::core::state::State;
use crate::core::timers::Timer;
use crate::core::worker::{Key, Phase};
use crate::error::{Error, Result};
use crate::events::{EventKind, ExitReason};

/// A reload in progress: from the signal to the `READY=1` that follows `RELOADING=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// When the signal was sent.
    pub since: Instant,
    /// The worker sent `RELOADING=1` since: its next `READY=1` ends the reload.
    pub confirmed: bool,
    /// It fails (as a ready timeout) if not done by then (`ready_timeout_ms`, when set).
    pub until: Option<Instant>,
}

impl State {
    /// A group that exists and is started, or the error the host gets.
    pub(crate) fn started_group(&self, name: &str) -> Result<()> {
        match self.groups.get(name) {
            Some(g) if g.started => Ok(()),
            _ if self.config.contains_key(name) || self.groups.contains_key(name) => Err(
                Error::InvalidArgument(format!("group '{name}' is not started")),
            ),
            _ => Err(Error::UnknownGroup(name.to_string())),
        }
    }

    /// The group's workers that have a live process, those being stopped included: a signal
    /// reaches every live process.
    fn live_keys(&self, name: &str) -> Vec<Key> {
        self.keys_of(name)
            .into_iter()
            .filter(|k| self.workers[k].alive())
            .collect()
    }

    /// Sends `signal` to every live worker of a started group, as its `kill_mode` says.
    pub fn signal_group(&mut self, name: &str, signal: i32) -> Result<()> {
        self.started_group(name)?;
        for key in self.live_keys(name) {
            self.signal_worker(key, signal);
        }
        Ok(())
    }

    /// `worker_signaled` and the signal, to the process group or to the worker alone.
    fn signal_worker(&mut self, key: Key, signal: i32) {
        let w = &self.workers[&key];
        let group = w.plan.spec.kill_mode == KillMode::ProcessGroup;
        self.events.push(EventKind::WorkerSignaled {
            group_name: w.group.clone(),
            worker_id: w.id.clone(),
            pid: w.pid,
            generation: w.generation,
            signal,
        });
        self.effect(Effect::SignalAs { key, signal, group });
    }

    /// Sends each worker of the named started groups its `reload_signal`; an `sd_notify` worker
    /// that is ready is `reloading` from now until its `READY=1` after `RELOADING=1`. All or
    /// nothing: every name is checked first.
    pub fn reload_groups(&mut self, names: &[&str], now: Instant) -> Result<()> {
        for &name in names {
            self.started_group(name)?;
        }
        let mut seen = Vec::new();
        for &name in names {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            for key in self.live_keys(name) {
                self.reload_worker(key, now);
            }
        }
        Ok(())
    }

    fn reload_worker(&mut self, key: Key, now: Instant) {
        let w = &self.workers[&key];
        if matches!(w.phase, Phase::Stopping(_) | Phase::Killed(_)) {
            return;
        }
        let spec = &w.plan.spec;
        let signal = spec.reload_signal.number();
        let tracked = w.readiness == Readiness::SdNotify && w.ready();
        if !tracked {
            // Not ready yet (`wait_ready` waits for it anyway), or no way to tell: the signal.
            self.signal_worker(key, signal);
            return;
        }
        let group = spec.kill_mode == KillMode::ProcessGroup;
        let timeout =
            (spec.ready_timeout_ms > 0).then(|| Duration::from_millis(spec.ready_timeout_ms));
        let until = timeout.map(|t| now + t);
        let event = EventKind::WorkerReloading {
            group_name: w.group.clone(),
            worker_id: w.id.clone(),
            pid: w.pid,
            generation: w.generation,
            signal,
        };
        let w = self.workers.get_mut(&key).expect("listed");
        // A reload asked while one runs starts afresh: it needs a new RELOADING=1.
        w.reload = Some(Reload {
            since: now,
            confirmed: false,
            until,
        });
        self.events.push(event);
        self.effect(Effect::SignalAs { key, signal, group });
        if let Some(until) = until {
            self.arm(until, key, Timer::ReloadTimeout);
        }
    }

    /// An `sd_notify` message of a reloading worker: `RELOADING=1` confirms the reload, and the
    /// `READY=1` after it (in the same datagram too) ends it.
    pub(crate) fn reload_notified(&mut self, key: Key, reloading: bool, ready: bool, now: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        let Some(reload) = w.reload.as_mut() else {
            return;
        };
        if reloading {
            reload.confirmed = true;
        }
        let (confirmed, since) = (reload.confirmed, reload.since);
        if !(ready && confirmed && w.ready()) {
            return;
        }
        w.reload = None;
        let event = EventKind::WorkerReloaded {
            group_name: w.group.clone(),
            worker_id: w.id.clone(),
            pid: w.pid,
            generation: w.generation,
            duration_ms: now.saturating_duration_since(since).as_millis() as u64,
        };
        self.events.push(event);
    }

    /// The reload deadline passed: a worker still reloading fails as a ready timeout.
    pub(crate) fn reload_timed_out(&mut self, key: Key, now: Instant) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        let due = w.reload.and_then(|r| r.until).is_some_and(|u| u <= now);
        if due && w.ready() {
            self.fail_for(key, ExitReason::ReadyTimeout);
        }
    }
}

#[cfg(test)]
#[path = "one_group_tests.rs"]
mod tests;
