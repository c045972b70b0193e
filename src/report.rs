//! The JSON the host reads about its groups (the status of `mpsup_status_json`), made from the
//! core's plain data.

use serde_json::{json, Value};

use crate::core::group::RolloutState;
use crate::core::state::State;
use crate::core::worker::Phase;

/// One group's entry of the status: target, running, ready, generation, rollout.
pub(crate) fn group_status(core: &State, name: &str) -> Value {
    let Some(g) = core.groups.get(name) else {
        return json!({"started": false, "failed": false, "generation": 0, "target": 0,
                      "running": 0, "ready": 0, "rollout": null, "listen": []});
    };
    let workers: Vec<_> = g
        .keys
        .iter()
        .filter_map(|(_, k)| core.workers.get(k))
        .collect();
    let running = workers
        .iter()
        .filter(|w| w.alive() && !matches!(w.phase, Phase::Stopping(_)))
        .count();
    let ready = workers.iter().filter(|w| w.ready()).count();
    let rollout = g.rollout.as_ref().map(|r| {
        let (state, worker_id, reason) = match &r.state {
            RolloutState::Running => ("running", None, None),
            RolloutState::Failed { worker_id, reason } => {
                ("failed", Some(worker_id.clone()), Some(reason.clone()))
            }
        };
        json!({"generation": r.generation, "state": state, "replaced": r.replaced,
               "remaining": r.pending.len() + r.replacing.len(),
               "worker_id": worker_id, "reason": reason})
    });
    let generation = g
        .rollout
        .as_ref()
        .filter(|r| r.state == RolloutState::Running)
        .map_or(g.generation, |r| r.generation);
    json!({"started": g.started, "failed": g.failed, "generation": generation,
           "target": if g.started { g.target } else { 0 }, "running": running, "ready": ready,
           "rollout": rollout, "listen": []})
}
