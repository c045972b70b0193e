//! Stopping workers: graceful stops, forced kills, shutdown, and the bounded waits for exits.

use super::*;

impl Supervisor {
    /// Stops every running worker gracefully (`STOP` with `drain_inflight` over its control
    /// channel, else its `stop_signal`) and waits up to `graceful_timeout` for them to exit;
    /// `Error::Timeout` when some did not stop in time (they are left running: force them).
    pub fn stop_groups(&self, graceful_timeout: Duration, drain_inflight: bool) -> Result<()> {
        self.stop(None, graceful_timeout, drain_inflight)
    }

    /// `stop_groups` for the named groups only: the others keep running, their listen sockets
    /// open; the named groups' sockets are closed and they are no longer started. A name never
    /// configured is `Error::UnknownGroup`, and nothing stops.
    pub fn stop_named_groups(
        &self,
        names: &[&str],
        graceful_timeout: Duration,
        drain_inflight: bool,
    ) -> Result<()> {
        let mut named: Vec<String> = Vec::with_capacity(names.len());
        for &name in names {
            if !named.iter().any(|n| n == name) {
                named.push(name.to_string());
            }
        }
        self.stop(Some(&named), graceful_timeout, drain_inflight)
    }

    /// Stops the named groups (every group when `None`) gracefully and waits for their workers.
    fn stop(
        &self,
        names: Option<&[String]>,
        graceful_timeout: Duration,
        drain_inflight: bool,
    ) -> Result<()> {
        // Dependents stop before what they depend on: every stage but the last is stopped
        // and waited for here, each with its own timeout; the last is the stop as it was.
        let stages = {
            let engine = self.shared.lock();
            engine.core.check_open()?;
            if let Some(names) = names {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                engine.core.check_known(&names)?;
            }
            engine.core.stop_stages(names)
        };
        for stage in stages.iter().take(stages.len().saturating_sub(1)) {
            self.stop_stage(stage, graceful_timeout, drain_inflight)?;
        }
        // The deadline counts from the call, even when it waits for another call first.
        let deadline = deadline_after(graceful_timeout);
        let keys = {
            let _op = lock(&self.ops);
            let mut engine = self.shared.lock();
            engine.core.check_open()?;
            if let Some(names) = names {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                engine.core.check_known(&names)?;
            }
            engine.core.begin_stop(names, drain_inflight)
        };
        let left = self.wait_gone(&keys, deadline);
        self.close_stopped_listeners();
        match left {
            None => Ok(()),
            Some((id, _)) => Err(Error::Timeout(format!(
                "worker '{id}' did not stop within graceful timeout"
            ))),
        }
    }

    /// One stage of a stop in dependency order: the groups of `stage`, gracefully, waited for.
    fn stop_stage(&self, stage: &[String], timeout: Duration, drain: bool) -> Result<()> {
        let deadline = deadline_after(timeout);
        let keys = {
            let _op = lock(&self.ops);
            let mut engine = self.shared.lock();
            engine.core.check_open()?;
            engine.core.begin_stop(Some(stage), drain)
        };
        match self.wait_gone(&keys, deadline) {
            None => Ok(()),
            Some((id, _)) => Err(Error::Timeout(format!(
                "worker '{id}' did not stop within graceful timeout"
            ))),
        }
    }

    /// Kills the workers of the named groups with SIGKILL to their process groups and reaps
    /// them, waiting at most `KILL_BOUND`.
    pub fn force_terminate_groups(&self, names: &[&str]) -> Result<()> {
        let _op = lock(&self.ops);
        {
            let engine = self.shared.lock();
            engine.core.check_open()?;
            engine.core.check_known(names)?;
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let result = self.force_kill(Some(&names));
        self.close_stopped_listeners();
        result
    }

    /// Closes the listen sockets of every group that is not started (any more).
    fn close_stopped_listeners(&self) {
        let started: Vec<String> = {
            let engine = self.shared.lock();
            let groups = &engine.core.groups;
            groups
                .iter()
                .filter(|(_, g)| g.started)
                .map(|(n, _)| n.clone())
                // A waiting group keeps the sockets it got when it was started.
                .chain(engine.core.waiting.keys().cloned())
                .collect()
        };
        self.listeners.retain(|g| started.iter().any(|s| s == g));
    }

    /// Force-terminates every worker and makes later calls fail with an invalid-handle error.
    /// Bounded: a worker still there `KILL_BOUND` after SIGKILL is reported and left to the
    /// orphanage.
    pub fn shutdown(&self) -> Result<()> {
        // Between a handover's prepare and an exec: live again first (no handover prepared is
        // the usual case, and no error).
        let _ = self.handover_abort();
        {
            let mut engine = self.shared.lock();
            if engine.core.closed {
                return Ok(());
            }
            // Waits in other calls end now (they see the supervisor closed).
            engine.core.closed = true;
        }
        let _op = lock(&self.ops);
        let result = self.force_kill(None);
        let mut engine = self.shared.lock();
        let left: Vec<Key> = engine.io.pids().into_iter().map(|(k, _)| k).collect();
        for key in left {
            engine.io.abandon(key);
            engine.core.remove(key);
        }
        drop(engine);
        self.listeners.retain(|_| false);
        result
    }

    /// Kills the workers of `groups` (every worker when `None`) and waits until they are
    /// reaped, at most `KILL_BOUND`. The workers are chosen and marked under one lock, so that
    /// none can be respawned unseen in between.
    pub(super) fn force_kill(&self, groups: Option<&[String]>) -> Result<()> {
        let keys = self.shared.lock().core.begin_force(groups);
        self.wait_killed(&keys)
    }

    /// Waits for the killed `keys` to be reaped, at most `KILL_BOUND`, and reports those left
    /// (`worker_unkillable`). A worker the kernel refused the SIGKILL for (EPERM: the host may
    /// not signal it) is not waited for: nothing would change that. The bound is for those that
    /// got the signal and still do not die (stuck in the kernel).
    pub(super) fn wait_killed(&self, keys: &[Key]) -> Result<()> {
        let refused = |engine: &crate::runtime::engine::Locked<'_>, k: &Key| {
            engine
                .io
                .kill_errors
                .get(k)
                .is_some_and(|(_, refused)| *refused)
        };
        let waited: Vec<Key> = {
            let engine = self.shared.lock();
            keys.iter()
                .copied()
                .filter(|k| !refused(&engine, k))
                .collect()
        };
        let timed_out = self
            .wait_gone(&waited, Instant::now() + KILL_BOUND)
            .is_some();
        let mut engine = self.shared.lock();
        let left: Vec<Key> = keys
            .iter()
            .copied()
            .filter(|k| timed_out || refused(&engine, k))
            .filter(|k| engine.core.workers.get(k).is_some_and(|w| w.alive()))
            .collect();
        let mut first = None;
        for key in left {
            let error = engine.io.kill_errors.get(&key).map_or_else(
                || format!("still running {} s after SIGKILL", KILL_BOUND.as_secs()),
                |(error, _)| error.clone(),
            );
            if first.is_none() {
                let w = &engine.core.workers[&key];
                first = Some(format!(
                    "worker '{}' (pid {}) could not be killed: {error}",
                    w.id, w.pid
                ));
            }
            engine.core.unkillable(key, error);
        }
        first.map_or(Ok(()), |message| Err(Error::Timeout(message)))
    }

    /// Waits until none of `keys` is tracked any more (the monitor reaped them), or the
    /// deadline. Returns the id and pid of the first worker left.
    fn wait_gone(&self, keys: &[Key], deadline: Instant) -> Option<(String, i32)> {
        let mut engine = self.shared.lock();
        // Keys are never reused, so one that is gone stays gone. With `left` of them still
        // there, none can be done before `left` more workers went: the wait sleeps until then,
        // so it counts its keys a few times in all rather than once per exit.
        let mut look_at = 0;
        loop {
            if engine.core.removed >= look_at {
                let left = keys
                    .iter()
                    .filter(|k| engine.core.workers.contains_key(k))
                    .count();
                if left == 0 {
                    return None;
                }
                look_at = engine.core.removed + left as u64;
            }
            let now = Instant::now();
            if now >= deadline {
                return engine.core.first_left(keys).map(|w| (w.id.clone(), w.pid));
            }
            engine = engine.wait_removed(look_at, deadline - now);
        }
    }
}
