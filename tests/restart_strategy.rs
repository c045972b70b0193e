//! `restart_strategy`: under `one_for_one` a worker that ended is respawned alone; under
//! `one_for_all` every other running worker of its group is stopped gracefully and respawned
//! with it, and only the one that ended counts against the restart intensity.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Three polite workers restarted at once; `strategy` as given.
fn three(strategy: &str) -> mpsupervisor::Supervisor {
    let sup = supervisor(&[with(
        sh_group("g", 3, POLITE),
        json!({"readiness": "notify", "restart": "always", "restart_delay_ms": 1,
               "max_restarts": 1, "restart_strategy": strategy}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup
}

/// Kills worker `g#2` and waits until three workers are ready again after it; returns the
/// events from the kill on.
fn kill_the_second(sup: &mpsupervisor::Supervisor, before: &[i64]) -> Vec<Value> {
    let _ = drain_all(sup);
    kill(Pid::from_raw(before[1] as i32), Signal::SIGKILL).unwrap();
    let mut log = Vec::new();
    wait_events(sup, &mut log, |l| {
        let restarted = of_kind(l, "worker_ready").len();
        count(l, "worker_failed") == 1 && restarted >= 1 && {
            let snap = sup.snapshot_value();
            snap["g"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["ready"] == true)
                && pids(&snap, "g") != before
        }
    });
    log
}

#[test]
fn one_for_one_respawns_only_the_worker_that_ended() {
    let sup = three("one_for_one");
    let before = pids(&sup.snapshot_value(), "g");
    let log = kill_the_second(&sup, &before);
    let after = pids(&sup.snapshot_value(), "g");
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert_eq!(after[2], before[2]);
    assert_eq!(count(&log, "worker_stopped"), 0, "{log:?}");
    sup.stop_groups(secs(30.0), false).unwrap();
}

#[test]
fn one_for_all_replaces_every_worker_and_counts_one_restart() {
    let sup = three("one_for_all");
    let before = pids(&sup.snapshot_value(), "g");
    let mut log = kill_the_second(&sup, &before);
    // Wait until every worker runs a new process and is ready.
    wait_events(&sup, &mut log, |_| {
        let snap = sup.snapshot_value();
        let now = pids(&snap, "g");
        now.iter().all(|p| !before.contains(p))
            && snap["g"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["ready"] == true)
    });
    // The others were asked to stop and left gracefully (exit 0 on STOP), then respawned.
    let stopped: Vec<&Value> = of_kind(&log, "worker_stopped");
    let mut ids: Vec<&str> = stopped
        .iter()
        .map(|e| e["worker_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["g#1", "g#3"], "{log:?}");
    assert!(stopped
        .iter()
        .all(|e| e["mode"] == "graceful" && e["exit_code"] == 0));
    let restarting = of_kind(&log, "worker_restarting");
    assert_eq!(restarting.len(), 3, "{log:?}");
    // One restart counted: max_restarts 1 is not exceeded, the group is not failed.
    assert_eq!(count(&log, "group_failed"), 0, "{log:?}");
    assert_eq!(count(&log, "worker_failed"), 1, "{log:?}");
    for pid in before {
        assert_dead(pid);
    }
    sup.stop_groups(secs(30.0), false).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
}
