//! Reading the state back: the core rebuilt from `state::CoreState`, and what a refused state
//! leaves behind killed as at the host's death.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::group::Group;
use crate::core::plan::{Attributes, Plan};
use crate::core::policy::{Backoff, Intensity};
use crate::core::state::State;
use crate::core::worker::{ExitStatus, Phase, Role, Worker};
use crate::error::{Error, Result};
use crate::os;

use super::changes;
use super::state::{Clock, CoreState, GroupState, PhaseState, PlanState, WorkerState};

/// The names `Attributes::rlimits` uses (those of `Rlimits::given`).
const RLIMIT_NAMES: [&str; 8] = [
    "nofile", "core", "nproc", "as", "memlock", "stack", "cpu", "fsize",
];

fn bad(what: String) -> Error {
    Error::InvalidArgument(format!("handover state: {what}"))
}

/// Puts what `s` describes into an empty core.
pub fn restore_core(core: &mut State, s: CoreState, clock: &Clock) -> Result<()> {
    core.config = s.config.into_iter().map(|g| (g.name.clone(), g)).collect();
    core.generations = s.generations;
    core.next_key = s.next_key;
    core.removed = s.removed;
    let plans = s
        .plans
        .into_iter()
        .map(plan_of)
        .collect::<Result<Vec<_>>>()?;
    let plan = |i: usize| {
        plans
            .get(i)
            .cloned()
            .ok_or_else(|| bad(format!("plan {i} is missing")))
    };
    for g in s.groups {
        let mut group = group_of(&g, plan(g.plan)?, clock);
        // Changes in progress (`changes.rs`).
        if let Some(r) = g.rollout {
            let p = plan(r.plan)?;
            group.rollout = Some(changes::rollout_of(r, p, clock));
        }
        core.groups.insert(g.name, group);
    }
    for (name, i) in s.waiting {
        core.waiting.insert(name, plan(i)?);
    }
    for w in s.workers {
        let key = w.key;
        let worker = worker_of(w, plan, clock)?;
        if let Some(g) = core.groups.get_mut(&worker.group) {
            g.keys.insert((worker.index, key));
        }
        core.workers.insert(key, worker);
    }
    for (at, key, timer) in s.timers {
        core.arm(clock.instant(at), key, timer);
    }
    core.events.import(s.events, s.next_seq, s.dropped);
    Ok(())
}

fn cstring(bytes: Vec<u8>) -> Result<CString> {
    CString::new(bytes).map_err(|e| bad(format!("a string holds a NUL byte: {e}")))
}

fn plan_of(p: PlanState) -> Result<Arc<Plan>> {
    let mut rlimits = Vec::new();
    for (name, soft, hard) in p.rlimits {
        let name = RLIMIT_NAMES
            .iter()
            .find(|&&n| n == name)
            .ok_or_else(|| bad(format!("unknown rlimit '{name}'")))?;
        rlimits.push((*name, soft, hard));
    }
    Ok(Arc::new(Plan {
        spec: p.spec,
        program: cstring(p.program)?,
        argv: p.argv.into_iter().map(cstring).collect::<Result<_>>()?,
        env: p.env.into_iter().map(cstring).collect::<Result<_>>()?,
        cwd: p.cwd.map(cstring).transpose()?,
        attrs: Attributes {
            rlimits,
            umask: p.umask,
            groups: p.groups,
            gid: p.gid,
            uid: p.uid,
            no_new_privileges: p.no_new_privileges,
        },
    }))
}

fn group_of(g: &GroupState, plan: Arc<Plan>, clock: &Clock) -> Group {
    let mut group = Group::new(plan, g.generation);
    group.target = g.target;
    group.intensity =
        Intensity::from_times(g.intensity.iter().map(|&t| clock.instant(t)).collect());
    group.work_started = g.work_started;
    group.started = g.started;
    group.failed = g.failed;
    group.completed = g.completed;
    group.dependency_failed = g.dependency_failed.clone();
    group.restart_pending = g.restart_pending;
    group
}

fn worker_of(
    w: WorkerState,
    plan: impl Fn(usize) -> Result<Arc<Plan>>,
    clock: &Clock,
) -> Result<Worker> {
    let mut worker = Worker::new(plan(w.plan)?, w.index, w.generation, Role::Member);
    if worker.group != w.group {
        return Err(bad(format!("worker {} is not of its plan's group", w.key)));
    }
    worker.pid = w.pid;
    worker.phase = match w.phase {
        PhaseState::Starting => Phase::Starting,
        PhaseState::Ready { last_heartbeat } => Phase::Ready {
            last_heartbeat: clock.instant(last_heartbeat),
        },
        PhaseState::Restarting => Phase::Restarting,
        PhaseState::Failed => Phase::Failed,
        // Changes in progress (`changes.rs`).
        PhaseState::Stopping(mode) => Phase::Stopping(mode),
        PhaseState::Killed(reason) => Phase::Killed(reason),
    };
    worker.readiness = w.readiness;
    worker.has_channel = w.has_channel;
    worker.restarts = w.restarts;
    worker.backoff = Backoff {
        consecutive: w.consecutive,
        ready_at: w.ready_at.map(|t| clock.instant(t)),
    };
    worker.spawned_at = w.spawned_at.map(|t| clock.instant(t));
    worker.started_at_ms = w.started_at_ms;
    worker.last_heartbeat_ms = w.last_heartbeat_ms;
    worker.exit = ExitStatus {
        code: w.exit.0,
        signal: w.exit.1,
        oom_killed: w.exit.2,
    };
    worker.last_exit = w.last_exit;
    worker.status = w.status;
    worker.extend_until = w.extend_until.map(|t| clock.instant(t));
    worker.stderr_tail = w.stderr_tail;
    worker.notify = w.notify;
    worker.rss_over = w.rss_over;
    worker.probes = w.probes;
    worker.respawn_after_stop = w.respawn_after_stop_ms.map(Duration::from_millis);
    // Changes in progress (`changes.rs`).
    worker.role = w.role;
    worker.reload = w.reload.map(|r| changes::reload_of(r, clock));
    worker.replaces = w.replaces;
    Ok(worker)
}

/// A state this image cannot use: every worker it names is killed (process group and process)
/// and reaped, and, with `close`, the descriptors it names are closed, the keeper's socket among
/// them, so the keeper kills whatever is left and exits, as at the host's death. Only the
/// fields every format keeps are read (`state.rs`).
pub fn refuse(value: &serde_json::Value, close: bool) {
    let numbers = |v: Option<&serde_json::Value>| -> Vec<i64> {
        v.and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
            .unwrap_or_default()
    };
    let pids: Vec<i32> = numbers(value.get("pids"))
        .into_iter()
        .chain(numbers(value.get("orphans")))
        .filter(|&p| p > 0 && p <= i32::MAX as i64)
        .map(|p| p as i32)
        .collect();
    for &pid in &pids {
        let _ = os::kill_group(pid, libc::SIGKILL);
        let _ = os::kill_pid(pid, libc::SIGKILL);
    }
    let until = Instant::now() + Duration::from_secs(2);
    let mut left = pids;
    while !left.is_empty() && Instant::now() < until {
        left.retain(|&pid| !os::try_reap(pid));
        std::thread::sleep(Duration::from_millis(1));
    }
    for pid in left {
        crate::runtime::child::orphan(pid);
    }
    if !close {
        return;
    }
    let keeper = value.pointer("/lifeline/keeper");
    let keeper_pid = keeper.and_then(|k| k.get(0)).and_then(|p| p.as_i64());
    let mut fds: Vec<i64> = numbers(keeper).into_iter().skip(1).collect();
    fds.extend(value.pointer("/notify/0").and_then(|n| n.as_i64()));
    if let Some(procs) = value.get("procs").and_then(|p| p.as_array()) {
        for p in procs {
            fds.extend(["pidfd", "control"].iter().filter_map(|k| p[k].as_i64()));
        }
    }
    if let Some(groups) = value.get("listen").and_then(|l| l.as_array()) {
        for s in groups.iter().filter_map(|g| g["sockets"].as_array()) {
            fds.extend(s.iter().filter_map(|s| s["fd"].as_i64()));
        }
    }
    fds.extend(super::carry::descriptors_of(value));
    for fd in fds.into_iter().filter(|&f| f > 2 && f <= i32::MAX as i64) {
        drop(os::handover::take_inherited(fd as i32));
    }
    // The keeper, our child, exits once its socket ends.
    if let Some(pid) = keeper_pid.filter(|&p| p > 0 && p <= i32::MAX as i64) {
        let until = Instant::now() + Duration::from_secs(3);
        while !os::try_reap(pid as i32) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
