//! The engine with real processes: live scaling, rolling restarts (bounds, order, new
//! environment, failure), status, the PATH of a group's environment.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use mpsupervisor::Error;
use serde_json::{json, Value};

fn notify(group: Value) -> Value {
    with(group, json!({"readiness": "notify"}))
}

fn ids(snapshot: &Value, group: &str) -> Vec<String> {
    snapshot[group]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap().to_string())
        .collect()
}

fn environ(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
        .unwrap_or_default()
}

#[test]
fn scaling_up_adds_ready_workers_with_the_next_ids() {
    let sup = supervisor(&[notify(sh_group("g", 2, POLITE))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.scale_group("g", 4).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    assert_eq!(ids(&snap, "g"), ["g#1", "g#2", "g#3", "g#4"]);
    assert!(snap["g"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == true));
    let log = drain_all(&sup);
    let scaled = of_kind(&log, "group_scaled");
    assert_eq!(scaled.len(), 1);
    assert_eq!(
        (scaled[0]["from"].as_u64(), scaled[0]["to"].as_u64()),
        (Some(2), Some(4))
    );
    let status = sup.status_value();
    assert_eq!(status["groups"]["g"]["target"], 4);
    assert_eq!(status["groups"]["g"]["ready"], 4);
    assert_eq!(status["groups"]["g"]["running"], 4);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn scaling_down_stops_the_highest_ids_gracefully_and_none_is_respawned() {
    let sup = supervisor(&[with(
        notify(sh_group("g", 3, POLITE)),
        json!({"restart": "always"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let before = pids(&sup.snapshot_value(), "g");
    drain_all(&sup);
    sup.scale_group("g", 1).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopped") == 2);
    for e in of_kind(&log, "worker_stopped") {
        assert_eq!(e["mode"], "graceful");
        assert_eq!(e["exit_code"], 0);
        assert!(["g#2", "g#3"].contains(&e["worker_id"].as_str().unwrap()));
    }
    assert_eq!(count(&log, "worker_restarting"), 0);
    assert_eq!(count(&log, "worker_spawned"), 0);
    let snap = sup.snapshot_value();
    assert_eq!(ids(&snap, "g"), ["g#1"]);
    assert_eq!(pids(&snap, "g"), [before[0]]);
    assert_gone(before[1]);
    assert_gone(before[2]);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn a_worker_scaled_away_that_ignores_stop_is_killed_after_stop_timeout() {
    let sup = supervisor(&[with(
        notify(sh_group("g", 2, STUBBORN)),
        json!({"stop_timeout_ms": 200}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    drain_all(&sup);
    sup.scale_group("g", 1).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopped") == 1);
    let kinds: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e["worker_id"] == "g#2")
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["mode"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("worker_stopping", "graceful"),
            ("worker_stopping", "forced"),
            ("worker_stopped", "forced")
        ]
    );
    assert_eq!(of_kind(&log, "worker_stopped")[0]["signal"], libc::SIGKILL);
    sup.force_terminate_groups(&["g"]).unwrap();
}

#[test]
fn scaling_is_refused_for_unknown_and_unstarted_groups() {
    let sup = supervisor(&[notify(sh_group("g", 1, POLITE))]);
    assert!(matches!(
        sup.scale_group("nope", 1),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        sup.scale_group("g", 1),
        Err(Error::InvalidArgument(_))
    ));
    sup.start_groups(&["g"]).unwrap();
    assert!(matches!(
        sup.scale_group("g", 4097),
        Err(Error::InvalidArgument(_))
    ));
    sup.scale_group("g", 0).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopped") == 1);
    assert!(!sup.wait_ready(secs(1.0)).unwrap(), "no workers: false");
    assert_eq!(sup.snapshot_value(), json!({"g": []}));
}

/// Replays the events of a rollout and checks its bounds at every step: never more than
/// target + max_surge workers that are not stopping, never fewer than target - max_unavailable
/// ready ones, and each old worker asked to stop only after its slot's new worker was ready.
fn check_rollout(log: &[Value], target: usize, max_surge: usize, max_unavailable: usize) {
    let mut live: BTreeSet<i64> = BTreeSet::new();
    let mut ready: BTreeSet<i64> = BTreeSet::new();
    let mut generation: BTreeMap<i64, u64> = BTreeMap::new();
    let mut new_ready_slots: BTreeSet<String> = BTreeSet::new();
    let mut started = false;
    for e in log {
        let pid = e["pid"].as_i64().unwrap_or(0);
        match e["kind"].as_str().unwrap() {
            "worker_spawned" => {
                live.insert(pid);
                generation.insert(pid, e["generation"].as_u64().unwrap());
            }
            "worker_ready" => {
                ready.insert(pid);
                if started && e["generation"] == 2 {
                    new_ready_slots.insert(e["worker_id"].as_str().unwrap().to_string());
                }
            }
            "worker_stopping" => {
                live.remove(&pid);
                ready.remove(&pid);
                if started && max_unavailable == 0 {
                    let slot = e["worker_id"].as_str().unwrap();
                    assert!(
                        new_ready_slots.contains(slot),
                        "old {slot} stopped before its replacement was ready"
                    );
                }
            }
            "rollout_started" => started = true,
            _ => {}
        }
        if started {
            assert!(live.len() <= target + max_surge, "too many workers at {e}");
            assert!(
                ready.len() + max_unavailable >= target,
                "too few ready at {e}"
            );
        }
    }
}

#[test]
fn a_rolling_restart_replaces_every_worker_within_its_bounds_with_the_new_environment() {
    let group = with(
        notify(sh_group("g", 3, POLITE)),
        json!({"env": {"VERSION": "1"}}),
    );
    let sup = supervisor(std::slice::from_ref(&group));
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let old = pids(&sup.snapshot_value(), "g");
    let v2 = with(group, json!({"env": {"VERSION": "2"}}));
    sup.configure_json(&Value::Array(vec![v2]).to_string())
        .unwrap();
    let mut log = drain_all(&sup);
    sup.restart_groups(&["g"], &Default::default()).unwrap();
    assert!(
        sup.wait_ready(secs(60.0)).unwrap(),
        "wait_ready waits for the rollout"
    );
    wait_events(&sup, &mut log, |l| {
        count(l, "rollout_finished") == 1 && count(l, "worker_stopped") == 3
    });
    check_rollout(&log, 3, 1, 0);
    let replaced = of_kind(&log, "worker_replaced");
    assert_eq!(replaced.len(), 3);
    let snap = sup.snapshot_value();
    assert_eq!(ids(&snap, "g"), ["g#1", "g#2", "g#3"]);
    for w in snap["g"].as_array().unwrap() {
        assert_eq!(w["generation"], 2);
        let pid = w["pid"].as_i64().unwrap();
        assert!(!old.contains(&pid));
        assert!(environ(pid).lines().any(|l| l == "VERSION=2"), "{pid}");
    }
    for pid in old {
        assert_gone(pid);
    }
    let status = sup.status_value();
    assert_eq!(status["groups"]["g"]["generation"], 2);
    assert_eq!(status["groups"]["g"]["rollout"], Value::Null);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn a_rollout_with_no_surge_stays_within_max_unavailable() {
    let sup = supervisor(&[notify(sh_group("g", 4, POLITE))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let mut log = drain_all(&sup);
    sup.restart_groups(
        &["g"],
        &options(r#"{"max_surge": 0, "max_unavailable": 2}"#),
    )
    .unwrap();
    wait_events(&sup, &mut log, |l| count(l, "rollout_finished") == 1);
    check_rollout(&log, 4, 0, 2);
    assert_eq!(count(&log, "worker_replaced"), 4);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn a_new_version_that_crashes_halts_the_rollout_and_the_old_workers_stay() {
    let good = notify(sh_group("g", 3, POLITE));
    let sup = supervisor(std::slice::from_ref(&good));
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let old = pids(&sup.snapshot_value(), "g");
    let bad = with(good, json!({"argv": ["/bin/sh", "-c", "exit 3"]}));
    sup.configure_json(&Value::Array(vec![bad]).to_string())
        .unwrap();
    let mut log = drain_all(&sup);
    sup.restart_groups(&["g"], &Default::default()).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "rollout_failed") == 1);
    let failed = of_kind(&log, "rollout_failed")[0].clone();
    assert_eq!(failed["worker_id"], "g#1");
    assert_eq!(failed["reason"], "exited");
    assert_eq!(
        count(&log, "worker_stopping"),
        0,
        "no old worker was stopped"
    );
    assert!(
        !sup.wait_ready(secs(5.0)).unwrap(),
        "a failed rollout: false at once"
    );
    let snap = sup.snapshot_value();
    assert_eq!(pids(&snap, "g"), old);
    assert!(snap["g"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == true && w["generation"] == 1));
    let status = sup.status_value();
    assert_eq!(status["groups"]["g"]["rollout"]["state"], "failed");
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn a_new_version_that_never_gets_ready_is_killed_after_the_rollout_timeout() {
    let good = notify(sh_group("g", 2, POLITE));
    let sup = supervisor(std::slice::from_ref(&good));
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let old = pids(&sup.snapshot_value(), "g");
    let silent = with(
        good,
        json!({"argv": ["/bin/sh", "-c", "exec sleep 1000000"]}),
    );
    sup.configure_json(&Value::Array(vec![silent]).to_string())
        .unwrap();
    let mut log = drain_all(&sup);
    sup.restart_groups(&["g"], &options(r#"{"ready_timeout_ms": 300}"#))
        .unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(
        of_kind(&log, "rollout_failed")[0]["reason"],
        "ready_timeout"
    );
    assert_eq!(of_kind(&log, "worker_failed")[0]["reason"], "ready_timeout");
    let new_pid = of_kind(&log, "worker_spawned").last().unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert!(!old.contains(&new_pid));
    assert_gone(new_pid);
    assert_eq!(pids(&sup.snapshot_value(), "g"), old);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn restart_groups_is_all_or_nothing() {
    let sup = supervisor(&[
        notify(sh_group("a", 1, POLITE)),
        notify(sh_group("b", 1, POLITE)),
    ]);
    sup.start_groups(&["a"]).unwrap();
    assert!(matches!(
        sup.restart_groups(&["a", "b"], &Default::default()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        sup.restart_groups(&["a", "nope"], &Default::default()),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        sup.restart_groups(&["a"], &options(r#"{"max_surge": 0}"#)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        sup.restart_groups(&["a"], &options(r#"{"ready_timeout_ms": 31536000001}"#)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(count(&drain_all(&sup), "rollout_started"), 0);
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn a_bare_program_name_is_searched_in_the_path_of_the_groups_env() {
    let dir = TempDir::new("engine-path");
    let tool = dir.path().join("only-here-tool");
    std::fs::write(&tool, format!("#!/bin/sh\n{POLITE}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let sup = supervisor(&[notify(json!({
        "name": "g", "argv": ["only-here-tool"], "env": {"PATH": path}
    }))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    let elsewhere = supervisor(&[json!({"name": "g", "argv": ["only-here-tool"]})]);
    assert!(matches!(
        elsewhere.start_groups(&["g"]),
        Err(Error::Spawn { .. })
    ));
}

#[test]
fn status_reports_the_groups_and_what_holds_on_this_host() {
    let sup = supervisor(&[
        notify(sh_group("g", 2, POLITE)),
        sh_group("idle", 1, POLITE),
    ]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let status = sup.status_value();
    let g = &status["groups"]["g"];
    assert_eq!(g["started"], true);
    assert_eq!(g["generation"], 1);
    assert_eq!(
        (
            g["target"].as_u64(),
            g["running"].as_u64(),
            g["ready"].as_u64()
        ),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(status["groups"]["idle"]["started"], false);
    let guarantees = &status["guarantees"];
    assert_eq!(guarantees["spawn"], "posix_spawn");
    assert!(["pidfd", "poll"].contains(&guarantees["exit_watch"].as_str().unwrap()));
    assert!(guarantees["parallel_spawn"].as_u64().unwrap() >= 1);
    sup.stop_groups(secs(30.0), true).unwrap();
    assert_eq!(sup.status_value()["groups"]["g"]["started"], false);
}
