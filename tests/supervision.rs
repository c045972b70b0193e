//! Part 2: restarts with backoff, the intensity limit, timeouts, the bootstrap line and the
//! start gate, with real worker processes. The backoff arithmetic itself is unit-tested with a
//! fake clock in src/core/policy.rs.

mod common;

use common::*;
use mpsupervisor::Error;
use serde_json::json;

/// A worker that crashes (exit 1) the first time it runs, then behaves.
fn crash_once(dir: &std::path::Path) -> String {
    format!(
        r#"m={}/"$MPSUP_WORKER_ID"; if [ ! -e "$m" ]; then : > "$m"; exit 1; fi
echo READY >&3; while read -r l <&3; do case "$l" in STOP*) exit 0;; esac; done"#,
        dir.display()
    )
}

#[test]
fn a_respawned_worker_keeps_its_id_gets_a_new_pid_and_becomes_ready_again() {
    let dir = scratch_dir("respawn");
    let sup = supervisor(&[with(
        sh_group("g", 1, &crash_once(&dir)),
        json!({"readiness": "notify", "restart": "on-failure", "restart_delay_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 1);
    let spawned = of_kind(&log, "worker_spawned");
    assert_eq!(spawned.len(), 2);
    assert_eq!(spawned[0]["worker_id"], "g#1");
    assert_eq!(spawned[1]["worker_id"], "g#1");
    assert_ne!(spawned[0]["pid"], spawned[1]["pid"]);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(
        (failed["reason"].as_str(), failed["exit_code"].as_i64()),
        (Some("exited"), Some(1))
    );
    let restarting = of_kind(&log, "worker_restarting")[0];
    assert_eq!(restarting["worker_id"], "g#1");
    assert_eq!(restarting["attempt"], 1);
    assert_eq!(restarting["delay_ms"], 1);
    assert_eq!(of_kind(&log, "worker_ready")[0]["pid"], spawned[1]["pid"]);
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["restarts"], 1);
    assert_eq!(snap["g"][0]["pid"], spawned[1]["pid"]);
    assert_gone(spawned[0]["pid"].as_i64().unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn on_failure_does_not_restart_a_clean_exit_but_always_does() {
    let sup = supervisor(&[
        with(
            sh_group("clean", 1, "exit 0"),
            json!({"restart": "on-failure", "restart_delay_ms": 1}),
        ),
        with(
            sh_group("again", 1, "exit 0"),
            json!({"restart": "always", "restart_delay_ms": 1, "max_restarts": 1}),
        ),
    ]);
    sup.start_groups(&["clean", "again"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "group_failed") == 1 && count(l, "worker_failed") == 3
    });
    let restarted: Vec<&str> = of_kind(&log, "worker_restarting")
        .iter()
        .map(|e| e["group_name"].as_str().unwrap())
        .collect();
    assert_eq!(restarted, ["again"]);
    assert_eq!(sup.snapshot_value()["clean"][0]["state"], "failed");
}

#[test]
fn too_many_respawns_in_the_window_fail_the_group_and_kill_its_workers() {
    let sup = supervisor(&[
        with(
            sh_group("g", 1, "exit 7"),
            json!({"restart": "on-failure", "restart_delay_ms": 1, "max_restarts": 2, "restart_window_ms": 60000}),
        ),
        with(sh_group("g2", 2, POLITE), json!({"readiness": "notify"})),
    ]);
    sup.start_groups(&["g", "g2"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "group_failed") == 1);
    let failed = of_kind(&log, "group_failed")[0];
    assert_eq!(failed["group_name"], "g");
    assert_eq!(failed["restarts"], 2);
    assert_eq!(failed["window_ms"], 60000);
    assert_eq!(count(&log, "worker_restarting"), 2);
    assert_eq!(count(&log, "worker_failed"), 3);
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["state"], "failed");
    assert_eq!(snap["g"][0]["restarts"], 2);
    assert!(
        !sup.wait_ready(secs(60.0)).unwrap(),
        "a failed group makes wait_ready false"
    );
    // Starting the group again clears it.
    sup.force_terminate_groups(&["g"]).unwrap();
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn group_failure_kills_the_other_workers_of_the_group() {
    // Worker 1 always crashes; worker 2 is healthy and must be killed with the group.
    let script = r#"if [ "$MPSUP_WORKER_ID" = "g#1" ]; then exit 1; fi; exec sleep 1000000"#;
    let sup = supervisor(&[with(
        sh_group("g", 2, script),
        json!({"restart": "on-failure", "restart_delay_ms": 1, "max_restarts": 1, "control_channel": "off"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "group_failed") == 1
            && of_kind(l, "worker_stopped")
                .iter()
                .any(|e| e["worker_id"] == "g#2")
    });
    let healthy = of_kind(&log, "worker_spawned")
        .into_iter()
        .find(|e| e["worker_id"] == "g#2")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped[0]["mode"], "forced");
    assert_gone(healthy);
    sup.stop_groups(secs(30.0), true).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn no_respawn_after_a_requested_stop_or_force() {
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"readiness": "notify", "restart": "always", "restart_delay_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.force_terminate_groups(&["g"]).unwrap();
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_restarting"), 0);
    assert_eq!(count(&log, "worker_failed"), 0);
    assert_eq!(count(&log, "worker_stopped"), 4);
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn a_worker_that_stops_sending_heartbeats_fails_with_heartbeat_timeout() {
    let script = "echo READY >&3; echo HEARTBEAT >&3; exec sleep 1000000";
    let sup = supervisor(&[with(
        sh_group("g", 1, script),
        json!({"readiness": "notify", "heartbeat_timeout_ms": 100}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(failed["reason"], "heartbeat_timeout");
    assert_eq!(failed["signal"], 9);
    assert_gone(failed["pid"].as_i64().unwrap());
    let snap = sup.snapshot_value();
    assert!(
        snap["g"][0]["last_heartbeat_ms"].as_u64().is_some(),
        "{snap}"
    );
}

#[test]
fn a_worker_that_never_says_ready_fails_with_ready_timeout_and_is_respawned() {
    let sup = supervisor(&[with(
        sh_group("g", 1, "exec sleep 1000000"),
        json!({"readiness": "notify", "ready_timeout_ms": 50, "restart": "on-failure", "restart_delay_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_restarting") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(failed["reason"], "ready_timeout");
    assert_eq!(failed["signal"], 9);
    sup.force_terminate_groups(&["g"]).unwrap();
}

#[test]
fn bootstrap_is_the_first_line_byte_exact() {
    let dir = scratch_dir("bootstrap");
    let payload = json!({"greeting": "héllo ✓ 🚀 \u{0007}\n", "big": "x".repeat(64 * 1024), "n": [1, 2.5, null]});
    let script = format!(
        r#"IFS= read -r line <&3; printf '%s\n' "$line" > {}/line; echo "$MPSUP_BOOTSTRAP" > {}/flag; echo READY >&3; read -r x <&3"#,
        dir.display(),
        dir.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify", "bootstrap": payload}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    let expected = format!("BOOTSTRAP {}\n", serde_json::to_string(&payload).unwrap());
    assert_eq!(
        std::fs::read(dir.join("line")).unwrap(),
        expected.as_bytes()
    );
    assert_eq!(read(&dir.join("flag")), "1\n");
}

#[test]
fn start_work_is_refused_until_every_named_worker_is_ready_then_delivered_once() {
    let dir = scratch_dir("gate");
    let logger = format!(
        r#"echo READY >&3; while read -r l <&3; do echo "$l" >> {}/"$MPSUP_WORKER_ID"; case "$l" in STOP*) exit 0;; esac; done"#,
        dir.display()
    );
    let sup = supervisor(&[
        with(
            sh_group("a", 2, &logger),
            json!({"readiness": "notify", "start_gate": true}),
        ),
        with(
            sh_group("b", 2, "read -r x <&3"),
            json!({"readiness": "notify", "start_gate": true}),
        ),
    ]);
    assert!(
        matches!(sup.start_work(&["a"]), Err(Error::NotReady(m)) if m == "workers not ready: a#*")
    );
    sup.start_groups(&["a", "b"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
    match sup.start_work(&["b", "a"]) {
        Err(Error::NotReady(m)) => assert_eq!(m, "workers not ready: b#1, b#2"),
        other => panic!("expected NotReady, got {other:?}"),
    }
    sup.start_work(&["a"]).unwrap();
    let log = drain_all(&sup);
    let work = of_kind(&log, "supervisor_start_work");
    assert_eq!(
        (
            work[0]["group_count"].as_u64(),
            work[0]["worker_count"].as_u64()
        ),
        (Some(1), Some(2))
    );
    sup.stop_groups(secs(30.0), true).unwrap();
    for id in ["a#1", "a#2"] {
        assert_eq!(
            read(&dir.join(id)),
            "START\nSTOP DRAIN\n",
            "{id}: START exactly once, then STOP"
        );
    }
}

#[test]
fn lifecycle_events_become_jsonl_records_at_their_levels() {
    let dir = scratch_dir("logging");
    let all = dir.join("all.jsonl");
    let warn = dir.join("warn.jsonl");
    let sup = supervisor(&[sh_group("quits", 1, "exit 3")]);
    let settings = |path: &std::path::Path, level: &str| {
        json!({"lifecycle_events": {"enabled": true, "level": level},
               "exporters": [{"kind": "jsonl", "settings": {"path": path}}]})
        .to_string()
    };
    assert!(matches!(
        sup.configure_logging_json(r#"{"exporters": [{"kind": "syslog"}]}"#),
        Err(Error::InvalidConfig(m)) if m.starts_with("settings.exporters[0].kind")
    ));
    sup.configure_logging_json(&settings(&all, "info")).unwrap();
    sup.start_groups(&["quits"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    // Switching settings drops the old logger, which writes out everything queued first.
    sup.configure_logging_json(&settings(&warn, "warn"))
        .unwrap();
    sup.start_groups(&["quits"]).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 2);
    assert_eq!(sup.log_records_dropped(), 0);
    drop(sup);
    let records = |path: &std::path::Path| -> Vec<serde_json::Value> {
        read(path)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = records(&all);
    let messages: Vec<&str> = all.iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(
        messages,
        [
            "bootstrap.worker_spawned",
            "bootstrap.supervisor_start_groups",
            "bootstrap.worker_failed"
        ]
    );
    assert_eq!(all[0]["level"], "info");
    assert_eq!(all[0]["fields"]["worker_id"], "quits#1");
    assert!(all[0]["fields"].get("seq").is_none() && all[0]["ts_ms"].as_u64().is_some());
    assert_eq!(all[2]["level"], "warn");
    assert_eq!(all[2]["fields"]["exit_code"], 3);
    let warn = records(&warn);
    let levels: Vec<(&str, &str)> = warn
        .iter()
        .map(|r| (r["message"].as_str().unwrap(), r["level"].as_str().unwrap()))
        .collect();
    // At "warn", the restart of the group (info) is left out; its failure is written.
    assert_eq!(levels, [("bootstrap.worker_failed", "warn")]);
}

#[test]
fn a_stuck_log_exporter_does_not_slow_the_supervisor() {
    // Once the exporter is stuck, the supervisor must go on regardless: a supervisor that
    // waited for the exporter would not finish its 3 cycles in time.
    let (sup, reader, _dir) = within(HANG, "3 cycles with a stuck exporter", || {
        supervisor_with_stuck_log_exporter("stuck-log")
    });
    assert_eq!(count(&drain_all(&sup), "worker_stopped"), 300);
    // Drain the FIFO so that the writer finishes and the drop below need not wait for it.
    let drainer = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut total = 0usize;
        loop {
            let mut p = libc::pollfd {
                fd: reader,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: valid pollfd and buffer; `reader` is ours.
            unsafe {
                libc::poll(&mut p, 1, -1);
                let n = libc::read(reader, buf.as_mut_ptr().cast(), buf.len());
                if n == 0 {
                    libc::close(reader);
                    return total;
                }
                total += n.max(0) as usize;
            }
        }
    });
    drop(sup);
    assert!(
        drainer.join().unwrap() > 65536,
        "the exporter really was stuck behind a full pipe"
    );
}

#[test]
fn a_worker_respawned_after_start_work_gets_start_too() {
    let dir = scratch_dir("gate-respawn");
    // The first run crashes on START; the second records what it receives.
    let script = format!(
        r#"m={d}/"$MPSUP_WORKER_ID"; echo READY >&3
while read -r l <&3; do
  if [ ! -e "$m" ]; then : > "$m"; exit 1; fi
  echo "$l" >> {d}/lines; case "$l" in STOP*) exit 0;; esac
done"#,
        d = dir.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify", "start_gate": true, "restart": "on-failure", "restart_delay_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.start_work(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
    sup.stop_groups(secs(30.0), true).unwrap();
    assert_eq!(read(&dir.join("lines")), "START\nSTOP DRAIN\n");
}

/// A worker with a child in its process group; both record the signals they get. On SIGTERM
/// the worker waits for its child, which exits on its own SIGTERM ("group") or on the SIGUSR1
/// the worker sends it ("mixed").
const MASTER: &str = r#"
import os, signal, socket, sys
log, mode = sys.argv[1], sys.argv[2]
r, w = os.pipe()
child = os.fork()
if child == 0:
    def got(sig, _):
        with open(log, "a") as f:
            f.write(signal.Signals(sig).name + "\n")
        os._exit(0)
    signal.signal(signal.SIGTERM, got)
    signal.signal(signal.SIGUSR1, got)
    os.write(w, b"x")
    while True:
        signal.pause()
os.read(r, 1)
def stop(*_):
    if mode == "mixed":
        os.kill(child, signal.SIGUSR1)
    os.waitpid(child, 0)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", "\0" + os.environ["NOTIFY_SOCKET"][1:])
while True:
    signal.pause()
"#;

#[test]
fn kill_mode_mixed_sends_the_stop_signal_to_the_worker_alone() {
    let dir = TempDir::new("kill-mode");
    for (kill_mode, mode, child_got) in [
        ("process_group", "group", "SIGTERM\n"),
        ("mixed", "mixed", "SIGUSR1\n"),
    ] {
        let log = dir.join(kill_mode);
        let sup = supervisor(&[json!({
            "name": "m", "argv": ["python3", "-c", MASTER, log, mode],
            "readiness": "sd_notify", "control_channel": "off", "kill_mode": kill_mode,
        })]);
        sup.start_groups(&["m"]).unwrap();
        assert!(
            sup.wait_ready(secs(30.0)).unwrap(),
            "{:#?}",
            drain_all(&sup)
        );
        sup.stop_groups(secs(30.0), false).unwrap();
        let events = drain_all(&sup);
        let stopped = of_kind(&events, "worker_stopped");
        assert_eq!(stopped[0]["exit_code"], 0, "{events:#?}");
        assert_eq!(read(&log), child_got, "kill_mode {kill_mode}");
    }
}

#[test]
fn an_exit_is_told_only_once_its_worker_is_reaped() {
    // Crash-looping workers: the event of each exit comes from the reaper after the reap, so
    // the pid it names is never a zombie of ours when the host sees it.
    let sup = supervisor(&[with(
        sh_group("g", 4, "exit 1"),
        json!({"restart": "always", "restart_delay_ms": 1, "max_restarts": 1000}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let checked = std::cell::Cell::new(0);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        let failed = of_kind(l, "worker_failed");
        for e in &failed[checked.get()..] {
            let pid = e["pid"].as_i64().unwrap();
            assert_ne!(proc_state(pid), Some('Z'), "pid {pid} told before its reap");
        }
        checked.set(failed.len());
        failed.len() >= 40
    });
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
}
