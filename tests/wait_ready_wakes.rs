//! `wait_ready` wakes on events, never by sleeping in steps: the waiting thread's voluntary
//! context switches during a long wait stay few. (A 50 ms polling loop would switch 20 times a
//! second.) One binary of its own, so no other test's load shares the machine's wake-ups.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// This thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_long_wait_ready_sleeps_until_the_worker_is_ready() {
    // Ready only after 1.5 s: the worker sleeps, then says READY.
    let sup = supervisor(&[with(
        sh_group("g", 1, "sleep 1.5; echo READY >&3; read -r l <&3"),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let (ready, elapsed, switches) = std::thread::scope(|s| {
        s.spawn(|| {
            let before = voluntary_switches();
            let start = Instant::now();
            let ready = sup.wait_ready(secs(60.0)).unwrap();
            let elapsed = start.elapsed();
            (ready, elapsed, voluntary_switches() - before)
        })
        .join()
        .unwrap()
    });
    assert!(ready);
    // It did wait (for the worker), and far less than its timeout.
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );
    assert!(
        switches < 20,
        "the waiting thread woke {switches} times in {elapsed:?}"
    );
    sup.stop_groups(secs(30.0), true).unwrap();
}
