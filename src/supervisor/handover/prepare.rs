//! Writing the state: what the engine holds, turned into `state::Handover`. Changes in progress
//! (rollouts, stops, reloads, replacements, groups waiting for dependencies) are written with it
//! (`changes.rs`); spawns in flight are landed first.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::group::Group;
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::worker::{Phase, Worker};

use super::changes;
use super::state::{Clock, CoreState, GroupState, PhaseState, PlanState, WorkerState};

/// The core's state, its times placed on `clock`.
pub fn core_state(core: &State, clock: &Clock) -> CoreState {
    let mut plans = Plans::default();
    let groups = core
        .groups
        .iter()
        .map(|(name, g)| {
            let mut state = group_state(name, g, plans.index(&g.plan), clock);
            // Changes in progress (`changes.rs`).
            state.rollout = g
                .rollout
                .as_ref()
                .map(|r| changes::rollout_state(r, plans.index(&r.plan), clock));
            state
        })
        .collect();
    let mut workers: Vec<WorkerState> = core
        .workers
        .iter()
        .map(|(&key, w)| worker_state(key, w, plans.index(&w.plan), clock))
        .collect();
    workers.sort_by_key(|w| w.key);
    let timers = core
        .timers
        .entries()
        .into_iter()
        .filter(|(_, key, _)| core.workers.contains_key(key))
        .map(|(at, key, timer)| (clock.offset(at), key, timer))
        .collect();
    let (events, next_seq, dropped) = core.events.export();
    let waiting = changes::waiting_state(core, |p| plans.index(p));
    CoreState {
        config: core.config.values().cloned().collect(),
        generations: core.generations.clone(),
        next_key: core.next_key,
        removed: core.removed,
        plans: plans.states,
        groups,
        workers,
        timers,
        events,
        next_seq,
        dropped,
        waiting,
    }
}

/// Each plan once, by the address of its `Arc`.
#[derive(Default)]
struct Plans {
    seen: HashMap<*const Plan, usize>,
    states: Vec<PlanState>,
}

impl Plans {
    fn index(&mut self, plan: &Arc<Plan>) -> usize {
        let states = &mut self.states;
        *self.seen.entry(Arc::as_ptr(plan)).or_insert_with(|| {
            states.push(plan_state(plan));
            states.len() - 1
        })
    }
}

fn plan_state(plan: &Plan) -> PlanState {
    let bytes = |c: &std::ffi::CString| c.as_bytes().to_vec();
    let a = &plan.attrs;
    PlanState {
        spec: plan.spec.clone(),
        program: bytes(&plan.program),
        argv: plan.argv.iter().map(bytes).collect(),
        env: plan.env.iter().map(bytes).collect(),
        cwd: plan.cwd.as_ref().map(bytes),
        rlimits: a
            .rlimits
            .iter()
            .map(|&(n, s, h)| (n.to_string(), s, h))
            .collect(),
        umask: a.umask,
        groups: a.groups.clone(),
        gid: a.gid,
        uid: a.uid,
        no_new_privileges: a.no_new_privileges,
    }
}

fn group_state(name: &str, g: &Group, plan: usize, clock: &Clock) -> GroupState {
    GroupState {
        name: name.to_string(),
        plan,
        generation: g.generation,
        target: g.target,
        intensity: g
            .intensity
            .times()
            .into_iter()
            .map(|t| clock.offset(t))
            .collect(),
        work_started: g.work_started,
        started: g.started,
        failed: g.failed,
        completed: g.completed,
        dependency_failed: g.dependency_failed.clone(),
        restart_pending: g.restart_pending,
        rollout: None,
    }
}

fn worker_state(key: u64, w: &Worker, plan: usize, clock: &Clock) -> WorkerState {
    let phase = match w.phase {
        Phase::Ready { last_heartbeat } => PhaseState::Ready {
            last_heartbeat: clock.offset(last_heartbeat),
        },
        Phase::Restarting => PhaseState::Restarting,
        Phase::Failed => PhaseState::Failed,
        // Changes in progress (`changes.rs`).
        Phase::Stopping(mode) => PhaseState::Stopping(mode),
        Phase::Killed(reason) => PhaseState::Killed(reason),
        // `changes::check_landed` lets no spawn in flight through.
        Phase::Starting | Phase::Spawning => PhaseState::Starting,
    };
    WorkerState {
        key,
        group: w.group.clone(),
        index: w.index,
        generation: w.generation,
        plan,
        pid: w.pid,
        phase,
        readiness: w.readiness,
        has_channel: w.has_channel,
        restarts: w.restarts,
        consecutive: w.backoff.consecutive,
        ready_at: w.backoff.ready_at.map(|t| clock.offset(t)),
        spawned_at: w.spawned_at.map(|t| clock.offset(t)),
        started_at_ms: w.started_at_ms,
        last_heartbeat_ms: w.last_heartbeat_ms,
        exit: (w.exit.code, w.exit.signal, w.exit.oom_killed),
        last_exit: w.last_exit.clone(),
        status: w.status.clone(),
        extend_until: w.extend_until.map(|t| clock.offset(t)),
        stderr_tail: w.stderr_tail.clone(),
        notify: w.notify.clone(),
        rss_over: w.rss_over,
        probes: w.probes,
        respawn_after_stop_ms: w.respawn_after_stop.map(|d| d.as_millis() as u64),
        // Changes in progress (`changes.rs`).
        role: w.role,
        reload: w.reload.as_ref().map(|r| changes::reload_state(r, clock)),
        replaces: w.replaces,
    }
}
