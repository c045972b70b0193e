//! One group at a time, with real processes: `stop_named_groups` leaves the other groups and
//! their sockets alone, `signal_group` reaches every worker as `kill_mode` says, and
//! `reload_groups` holds `wait_ready` until an sd_notify worker's `READY=1` after `RELOADING=1`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::{json, Value};

fn address(sup: &Supervisor, group: &str) -> SocketAddr {
    let status = sup.status_value();
    let listen = &status["groups"][group]["listen"];
    listen[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no socket for {group}: {status}"))
        .parse()
        .unwrap()
}

fn connects(address: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&address, Duration::from_secs(10))
}

fn web(name: &str, workers: u32) -> Value {
    with(
        sh_group(name, workers, POLITE),
        json!({"readiness": "notify", "listen": [{"name": "http", "tcp": "127.0.0.1:0"}]}),
    )
}

#[test]
fn stop_named_groups_leaves_the_other_groups_and_their_sockets_alone() {
    let sup = supervisor(&[web("a", 2), web("b", 2)]);
    sup.start_groups(&["a", "b"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let (a, b) = (address(&sup, "a"), address(&sup, "b"));
    let before = sup.snapshot_value();
    let (a_pids, b_pids) = (pids(&before, "a"), pids(&before, "b"));

    assert!(matches!(
        sup.stop_named_groups(&["a", "nope"], HANG, true),
        Err(Error::UnknownGroup(_))
    ));
    sup.stop_named_groups(&["a"], HANG, true).unwrap();

    for pid in a_pids {
        assert_gone(pid);
    }
    let after = sup.snapshot_value();
    assert_eq!(pids(&after, "b"), b_pids, "b's workers were touched");
    assert!(pids(&after, "a").is_empty(), "{after}");
    let status = sup.status_value();
    assert_eq!(status["groups"]["a"]["started"], false);
    assert_eq!(status["groups"]["a"]["ready"], 0);
    assert_eq!(status["groups"]["a"]["listen"], json!([]));
    assert_eq!(status["groups"]["b"]["started"], true);
    assert_eq!(
        connects(a).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    connects(b).expect("b's socket stays open");
    let stopped: Vec<Value> = drain_all(&sup)
        .into_iter()
        .filter(|e| e["kind"] == "worker_stopped")
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|e| e["group_name"] == "a"));
    assert!(
        stopped.iter().all(|e| e["mode"] == "graceful"),
        "{stopped:?}"
    );

    // With b stopped too, no group is started: wait_ready answers false at once.
    sup.stop_named_groups(&["b"], HANG, true).unwrap();
    assert!(!sup.wait_ready(secs(0.5)).unwrap());
    connects(b).unwrap_err();

    // A stopped group starts again, with a socket of its own.
    sup.start_groups(&["a"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    assert_eq!(pids(&sup.snapshot_value(), "a").len(), 2);
    connects(address(&sup, "a")).expect("a's new socket");
}

/// A Python worker that writes its pid to `<dir>/USR1.<pid>` for each SIGUSR1 it gets, and,
/// with `child`, forks a child in its process group that does the same (and writes
/// `<dir>/child.<pid>` once it can); it writes `<dir>/armed.<pid>` and is ready (sd_notify,
/// unless `extra` names another readiness) once its handlers are in place.
fn recorder(name: &str, workers: u32, dir: &Path, child: bool, extra: Value) -> Value {
    let script = format!(
        r#"
import os, signal, sys, time
def record(sig, frame):
    open(os.path.join({dir:?}, "USR1.%d" % os.getpid()), "a").write("x")
signal.signal(signal.SIGUSR1, record)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
if {child} and os.fork() == 0:
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    open(os.path.join({dir:?}, "child.%d" % os.getpid()), "w").write("")
else:
    # Armed (and, with sd_notify, ready) once the handlers are in place.
    open(os.path.join({dir:?}, "armed.%d" % os.getpid()), "w").write("")
    addr = os.environ.get("NOTIFY_SOCKET")
    if addr:
        import socket
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", "\0" + addr[1:])
while True:
    time.sleep(1)
"#,
        dir = dir.to_str().unwrap(),
        child = if child { "True" } else { "False" },
    );
    with(
        json!({"name": name, "workers": workers, "argv": ["python3", "-c", script],
               "control_channel": "off", "readiness": "sd_notify"}),
        extra,
    )
}

/// The pids of the files `<dir>/<prefix>.<pid>`.
fn recorded(dir: &Path, prefix: &str) -> Vec<i64> {
    let mut pids: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix(&format!("{prefix}."))?.parse().ok()
        })
        .collect();
    pids.sort();
    pids
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + HANG;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signal_group_reaches_every_worker_as_kill_mode_says() {
    let dir = scratch_dir("signal-group");
    let (whole, alone) = (dir.join("whole"), dir.join("alone"));
    std::fs::create_dir(&whole).unwrap();
    std::fs::create_dir(&alone).unwrap();
    let sup = supervisor(&[
        recorder("whole", 3, &whole, true, json!({})),
        recorder("alone", 1, &alone, true, json!({"kill_mode": "mixed"})),
        recorder("idle", 1, &dir, false, json!({})),
    ]);
    sup.start_groups(&["whole", "alone"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    // Every child is there (and has its handler) before the signal goes.
    wait_until("children", || {
        recorded(&whole, "child").len() == 3 && recorded(&alone, "child").len() == 1
    });
    drain_all(&sup);

    sup.signal_group("whole", libc::SIGUSR1).unwrap();
    sup.signal_group("alone", libc::SIGUSR1).unwrap();

    let snapshot = sup.snapshot_value();
    let mut expected = pids(&snapshot, "whole");
    expected.extend(recorded(&whole, "child"));
    expected.sort();
    wait_until("every process of 'whole' got SIGUSR1", || {
        recorded(&whole, "USR1") == expected
    });
    let alone_pid = pids(&snapshot, "alone");
    wait_until("the worker of 'alone' got SIGUSR1", || {
        recorded(&alone, "USR1") == alone_pid
    });
    let log = drain_all(&sup);
    let signaled = of_kind(&log, "worker_signaled");
    assert_eq!(signaled.len(), 4, "{log:#?}");
    assert!(signaled.iter().all(|e| e["signal"] == libc::SIGUSR1));
    // kill_mode "mixed": the worker alone, not the child in its process group. Its child
    // would have recorded by now if it had been signalled along with its parent, but that
    // is not proven by waiting: the whole group's children prove the signal reached theirs.
    assert_eq!(recorded(&alone, "USR1"), alone_pid);

    assert!(matches!(
        sup.signal_group("nope", libc::SIGUSR1),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        sup.signal_group("idle", libc::SIGUSR1),
        Err(Error::InvalidArgument(_))
    ));
    for bad in [0, -1, 64, 1000] {
        assert!(matches!(
            sup.signal_group("whole", bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    sup.stop_groups(HANG, true).unwrap();
}

/// An sd_notify worker that, on its reload signal, sends `RELOADING=1` (with `MONOTONIC_USEC`),
/// works 0.4 s, then sends `READY=1`.
fn reloader(name: &str, workers: u32, extra: Value) -> Value {
    let script = py_reloader("time.sleep(0.4)");
    with(
        json!({"name": name, "workers": workers, "argv": ["python3", "-c", script],
               "readiness": "sd_notify", "control_channel": "off"}),
        extra,
    )
}

#[test]
fn wait_ready_after_reload_groups_returns_only_after_ready_follows_reloading() {
    let dir = scratch_dir("reload");
    let sup = supervisor(&[
        reloader("d", 2, json!({})),
        // Not sd_notify: a reload is only its signal, nothing to wait for.
        recorder(
            "plain",
            1,
            &dir,
            false,
            json!({"reload_signal": "SIGUSR1", "readiness": "warmup", "warmup_ms": 0}),
        ),
    ]);
    sup.start_groups(&["d", "plain"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let before = sup.snapshot_value();
    let plain = pids(&before, "plain");
    wait_until("the plain worker's handler", || {
        recorded(&dir, "armed") == plain
    });
    drain_all(&sup);

    sup.reload_groups(&["d", "plain"]).unwrap();
    let states: Vec<Value> = sup.snapshot_value()["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].clone())
        .collect();
    assert!(states.iter().all(|s| s == "reloading"), "{states:?}");
    // Unready until READY=1 follows RELOADING=1 (each takes 0.4 s after the signal).
    assert!(sup.snapshot_value()["d"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == false));
    assert_eq!(sup.status_value()["groups"]["d"]["ready"], 0);
    assert!(sup.wait_ready(HANG).unwrap());
    // Every worker_reloaded was queued before wait_ready could answer true.
    let log = drain_all(&sup);
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(count(&log, "worker_reloading"), 2, "{kinds:?}");
    assert_eq!(count(&log, "worker_reloaded"), 2, "{kinds:?}");
    for e in of_kind(&log, "worker_reloading") {
        assert_eq!(e["signal"], libc::SIGHUP);
    }
    for e in of_kind(&log, "worker_reloaded") {
        assert!(e["duration_ms"].as_u64().unwrap() >= 400, "{e}");
    }
    // The plain worker just got its reload signal.
    let signaled = of_kind(&log, "worker_signaled");
    assert_eq!(signaled.len(), 1);
    assert_eq!(signaled[0]["group_name"], "plain");
    wait_until("the plain worker got SIGUSR1", || {
        recorded(&dir, "USR1") == plain
    });
    let after = sup.snapshot_value();
    assert_eq!(
        pids(&after, "d"),
        pids(&before, "d"),
        "the reload respawned"
    );
    assert!(after["d"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["state"] == "ready"));
    assert!(matches!(
        sup.reload_groups(&["d", "nope"]),
        Err(Error::UnknownGroup(_))
    ));
    sup.stop_groups(HANG, true).unwrap();
}

#[test]
fn a_worker_that_never_finishes_its_reload_fails_as_a_ready_timeout() {
    // It ignores SIGHUP, so it never sends RELOADING=1.
    let mut group = reloader(
        "d",
        1,
        json!({"ready_timeout_ms": 2000, "restart": "never"}),
    );
    group["argv"][2] = json!(group["argv"][2]
        .as_str()
        .unwrap()
        .replace("lambda *a: asked.append(1)", "signal.SIG_IGN"));
    let sup = supervisor(&[group]);
    sup.start_groups(&["d"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap(), "{:#?}", drain_all(&sup));
    sup.reload_groups(&["d"]).unwrap();
    assert!(!sup.wait_ready(HANG).unwrap());
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(of_kind(&log, "worker_failed")[0]["reason"], "ready_timeout");
}
