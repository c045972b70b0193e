//! The JSON the host reads about its groups (the snapshot, the status of `mpsup_status_json`),
//! made from the core's plain data.

use std::time::Instant;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::core::group::RolloutState;
use crate::core::state::State;
use crate::core::worker::Phase;
use crate::runtime::figures::Readings as Figures;

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
    let generation = g.running_rollout().map_or(g.generation, |r| r.generation);
    // A failed group keeps no worker count (nothing of it respawns until it is started again),
    // so the status calls it not started; the core's flag stays set until a stop or a force.
    let started = g.started && !g.failed;
    json!({"started": started, "failed": g.failed, "generation": generation,
           "target": if started { g.target } else { 0 }, "running": running, "ready": ready,
           "rollout": rollout, "listen": []})
}

/// The groups a snapshot shows: started ones, and any that still has workers.
fn shown(core: &State) -> impl Iterator<Item = (&String, &crate::core::group::Group)> {
    core.groups
        .iter()
        .filter(|(_, g)| g.started || !g.keys.is_empty())
}

/// (pid, started_at_ms) of every live worker a snapshot shows.
pub(crate) fn live_processes(core: &State) -> Vec<(i32, u64)> {
    shown(core)
        .flat_map(|(_, g)| g.keys.iter())
        .filter_map(|(_, k)| core.workers.get(k))
        .filter(|w| w.alive())
        .map(|w| (w.pid, w.started_at_ms))
        .collect()
}

struct Snapshot<'a> {
    core: &'a State,
    now: Instant,
    figures: &'a Figures,
}

struct GroupEntries<'a> {
    snapshot: &'a Snapshot<'a>,
    group: &'a crate::core::group::Group,
}

impl Serialize for Snapshot<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (name, group) in shown(self.core) {
            map.serialize_entry(
                name,
                &GroupEntries {
                    snapshot: self,
                    group,
                },
            )?;
        }
        map.end()
    }
}

impl Serialize for GroupEntries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Snapshot { core, now, figures } = self.snapshot;
        let mut seq = s.serialize_seq(Some(self.group.keys.len()))?;
        for w in self
            .group
            .keys
            .iter()
            .filter_map(|(_, k)| core.workers.get(k))
        {
            let mut entry = w.snapshot(*now);
            if w.alive() {
                if let Some(&(cpu, rss)) = figures.get(&(w.pid, w.started_at_ms)) {
                    entry.cpu_ms = Some(cpu);
                    entry.rss_bytes = Some(rss);
                }
            }
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

/// The snapshot JSON: group name → worker entries in index order.
pub(crate) fn snapshot_json(core: &State, now: Instant, figures: &Figures) -> String {
    serde_json::to_string(&Snapshot { core, now, figures }).expect("the snapshot serializes")
}
