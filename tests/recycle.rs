//! Recycling with real processes: `replace_worker`, `max_lifetime_ms` and `max_rss_bytes` each
//! replace a worker as one slot of a rolling restart: the new process is ready before the old
//! one is asked to stop, and the group's ready count never drops below its target.

mod common;

use common::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::{json, Value};

/// A Python sd_notify worker: ready once started; with `grow_mb`, it then holds that many
/// megabytes (written, so resident) and stays.
fn python_worker(name: &str, workers: u32, grow_mb: u32, extra: Value) -> Value {
    let script = format!(
        r#"
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
addr = os.environ["NOTIFY_SOCKET"]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", "\0" + addr[1:])
held = b"x" * ({grow_mb} << 20)
while True:
    time.sleep(1)
"#
    );
    with(
        json!({"name": name, "workers": workers, "argv": ["python3", "-c", script],
               "readiness": "sd_notify", "control_channel": "off"}),
        extra,
    )
}

/// The position in `log` of the first event of `kind` with field `pid` (or `key`) = `pid`.
fn position(log: &[Value], kind: &str, key: &str, pid: i64) -> usize {
    log.iter()
        .position(|e| e["kind"] == kind && e[key] == pid)
        .unwrap_or_else(|| panic!("no {kind} with {key} {pid}: {log:#?}"))
}

/// Checks one `worker_recycled` against the rest of the log: its new process was ready before
/// its old one was asked to stop, and the old one stopped gracefully.
fn check_recycled(log: &[Value], recycled: &Value) {
    let (old, new) = (
        recycled["old_pid"].as_i64().unwrap(),
        recycled["new_pid"].as_i64().unwrap(),
    );
    assert_ne!(old, new);
    let ready = position(log, "worker_ready", "pid", new);
    let stopping = position(log, "worker_stopping", "pid", old);
    assert!(
        ready < stopping,
        "old {old} stopped before new {new} was ready"
    );
    assert_eq!(log[stopping]["mode"], "graceful");
    let stopped = position(log, "worker_stopped", "pid", old);
    assert_eq!(log[stopped]["mode"], "graceful");
}

/// Collects events until `done`, checking at each turn that `group` has at least `target`
/// ready workers.
fn watch(
    sup: &Supervisor,
    group: &str,
    target: u64,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + HANG;
    while !done(&log) {
        assert!(std::time::Instant::now() < deadline, "never done: {log:#?}");
        let ready = sup.status_value()["groups"][group]["ready"]
            .as_u64()
            .unwrap();
        assert!(ready >= target, "only {ready} ready; events: {log:#?}");
        log.extend(drain_all(sup));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    log
}

fn stopped(log: &[Value], pid: i64) -> bool {
    log.iter()
        .any(|e| e["kind"] == "worker_stopped" && e["pid"] == pid)
}

#[test]
fn replace_worker_starts_the_new_process_before_it_stops_the_old_one() {
    let sup = supervisor(&[
        python_worker("r", 2, 0, json!({})),
        python_worker("idle", 1, 0, json!({})),
    ]);
    sup.start_groups(&["r"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let before = pids(&sup.snapshot_value(), "r");
    drain_all(&sup);

    sup.replace_worker("r#1").unwrap();
    let log = watch(&sup, "r", 2, |l| stopped(l, before[0]));
    let recycled = of_kind(&log, "worker_recycled");
    assert_eq!(recycled.len(), 1, "{log:#?}");
    assert_eq!(recycled[0]["reason"], "requested");
    assert_eq!(recycled[0]["worker_id"], "r#1");
    assert_eq!(recycled[0]["old_pid"], before[0]);
    assert_eq!(recycled[0]["rss_bytes"], Value::Null);
    check_recycled(&log, recycled[0]);
    let after = pids(&sup.snapshot_value(), "r");
    assert_eq!(after[1], before[1], "the other worker was touched");
    assert_eq!(after[0], recycled[0]["new_pid"].as_i64().unwrap());
    assert_gone(before[0]);

    for (id, unknown) in [
        ("r#3", true),
        ("nope#1", true),
        ("r1", true),
        ("idle#1", false),
    ] {
        let e = sup.replace_worker(id).unwrap_err();
        assert_eq!(matches!(e, Error::UnknownGroup(_)), unknown, "{id}: {e:?}");
        assert_eq!(
            matches!(e, Error::InvalidArgument(_)),
            !unknown,
            "{id}: {e:?}"
        );
    }
    sup.stop_groups(HANG, true).unwrap();
}

#[test]
fn max_lifetime_ms_recycles_each_worker_in_turn() {
    let group = python_worker(
        "l",
        2,
        0,
        json!({"max_lifetime_ms": 1500, "lifetime_jitter_ms": 1000}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["l"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let first = pids(&sup.snapshot_value(), "l");
    let log = watch(&sup, "l", 2, |l| {
        stopped(l, first[0]) && stopped(l, first[1])
    });
    let recycled = of_kind(&log, "worker_recycled");
    for pid in &first {
        let r = recycled
            .iter()
            .find(|r| r["old_pid"] == *pid)
            .unwrap_or_else(|| panic!("{pid} not recycled: {log:#?}"));
        assert_eq!(r["reason"], "max_lifetime");
        let age = r["age_ms"].as_u64().unwrap();
        assert!((1500..=2500 + 1000).contains(&age), "age {age}");
        check_recycled(&log, r);
    }
    sup.stop_groups(HANG, true).unwrap();
}

#[test]
fn max_rss_bytes_recycles_workers_that_grow() {
    let limit: u64 = 40 << 20;
    let group = python_worker(
        "m",
        2,
        64,
        json!({"max_rss_bytes": limit, "rss_sample_ms": 100}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["m"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let first = pids(&sup.snapshot_value(), "m");
    let log = watch(&sup, "m", 2, |l| {
        stopped(l, first[0]) && stopped(l, first[1])
    });
    for pid in &first {
        let r = of_kind(&log, "worker_recycled")
            .into_iter()
            .find(|r| r["old_pid"] == *pid)
            .unwrap_or_else(|| panic!("{pid} not recycled: {log:#?}"));
        assert_eq!(r["reason"], "max_rss");
        assert!(r["rss_bytes"].as_u64().unwrap() > limit, "{r}");
        check_recycled(&log, r);
    }
    sup.stop_groups(HANG, true).unwrap();
}
