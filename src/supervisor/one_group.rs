//! One group at a time: signals and reloads of the named groups, and the replacement of one
//! worker. (Stopping them is in `stop.rs`, with the stop of every group.)

use super::*;

impl Supervisor {
    /// Sends `signal` to every live worker of the started group `name`, to its process group
    /// or to the worker alone as the group's `kill_mode` says; `worker_signaled` for each.
    /// `Error::UnknownGroup` for a name never configured; `Error::InvalidArgument` for a group
    /// that is not started or a number that is not a signal (1 to 31).
    pub fn signal_group(&self, name: &str, signal: i32) -> Result<()> {
        if !os::is_signal(signal) {
            return Err(Error::InvalidArgument(format!(
                "signal: {signal} is not a signal number (1 to 31)"
            )));
        }
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.signal_group(name, signal)
    }

    /// Sends each worker of the named started groups its group's `reload_signal` and returns
    /// at once. An `sd_notify` worker is `reloading` from now until the `READY=1` that follows
    /// its `RELOADING=1`, so `wait_ready` called after this waits for it; one that is not done
    /// within its group's `ready_timeout_ms` (when set) is killed and fails with reason
    /// `ready_timeout`. Workers of other readiness just get the signal. All or nothing.
    pub fn reload_groups(&self, names: &[&str]) -> Result<()> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.reload_groups(names, Instant::now())
    }

    /// Replaces the worker `worker_id` (`"<group>#<index>"`) as one slot of a rolling restart:
    /// a new process of the same `worker_id`, configuration and generation is started, and only
    /// once it is ready is the old one stopped gracefully (killed after `stop_timeout_ms`);
    /// `worker_recycled` with reason `"requested"`. Returns at once. A replacement that exits
    /// or is not ready within `ready_timeout_ms` goes, and the old worker stays.
    /// `Error::UnknownGroup` for a group never configured or a worker it does not have;
    /// `Error::InvalidArgument` for a group that is not started or being rolled out, a worker
    /// that is not ready, or one already being replaced.
    pub fn replace_worker(&self, worker_id: &str) -> Result<()> {
        let mut engine = self.shared.lock();
        engine.core.check_open()?;
        engine.core.replace_worker(worker_id, Instant::now())
    }
}
