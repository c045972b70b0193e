//! The original's contracts and the lifecycle of real worker processes, through the Rust API.

#[path = "../common/mod.rs"]
mod common;
mod spawning;
mod stopping;

use common::*;
use mpsupervisor::{Error, Options, Supervisor};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn wait_ready_zero_is_false_after_start() {
    // A worker that cannot be ready yet; a wait that did not return at once would fail here.
    let sup = std::sync::Arc::new(supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"warmup_ms": 600_000}),
    )]));
    sup.start_groups(&["g"]).unwrap();
    let waits = within(Duration::from_secs(10), "wait_ready(0)", {
        let sup = sup.clone();
        move || {
            let start = Instant::now();
            (sup.wait_ready(Duration::ZERO).unwrap(), start.elapsed())
        }
    });
    assert!(!waits.0);
    assert!(waits.1 < Duration::from_secs(1), "{:?}", waits.1);
}

#[test]
fn wait_ready_without_workers_is_false_at_once() {
    let sup = supervisor(&[sh_group("g", 1, POLITE)]);
    // A wait that sat out its timeout would take 20 s.
    let start = Instant::now();
    assert!(!sup.wait_ready(secs(20.0)).unwrap());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn two_workers_appear_in_the_snapshot_right_after_start() {
    let sup = supervisor(&[sh_group("execution.cpu", 2, POLITE)]);
    sup.start_groups(&["execution.cpu"]).unwrap();
    let snap = sup.snapshot_value();
    let workers = snap["execution.cpu"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["worker_id"], format!("execution.cpu#{}", i + 1));
        assert_eq!(w["pid"], w["os_pid"]);
        assert_eq!(w["pid"], w["pgid"]);
        assert_eq!(w["alive"], true);
        assert_eq!(w["has_stop_event"], true);
        assert_eq!(w["stop_strategy"], "event");
        assert_eq!(w["control_channel"], "socketpair");
        assert!(w["state"] == "starting" || w["state"] == "ready");
        assert!(w["started_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
}

#[test]
fn start_emits_spawned_per_worker_then_start_groups() {
    // Workers that cannot become ready while the events are read (no worker_ready among them).
    let not_yet = json!({"warmup_ms": 600_000});
    let sup = supervisor(&[
        with(sh_group("a", 2, POLITE), not_yet.clone()),
        with(sh_group("b", 1, POLITE), not_yet),
    ]);
    sup.start_groups(&["a", "b"]).unwrap();
    let log = drain_all(&sup);
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "worker_spawned",
            "worker_spawned",
            "worker_spawned",
            "supervisor_start_groups"
        ]
    );
    assert_eq!(log[3]["group_count"], 2);
    assert_eq!(log[3]["worker_count"], 3);
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(log[0]["worker_id"], "a#1");
    assert_eq!(log[2]["group_name"], "b");
    assert_eq!(log[0]["readiness"], "warmup");
}
