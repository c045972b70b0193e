//! Handover through the Rust face, in one process: a supervisor freed after a prepare (no exec)
//! still stops its workers, a restart delay that was running when the state was written
//! resumes with the time that passed rather than starting again, and changes in progress (a
//! rollout, a stop, a group waiting for its dependency, a reload) cross and complete. The adopting supervisor is
//! made in the same process as the one that wrote the state, which is forgotten (never
//! dropped), as an `exec` would: every descriptor it held is the new one's.

mod common;

use std::time::Duration;

use common::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::json;

#[test]
fn a_supervisor_freed_after_prepare_stops_its_workers() {
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let workers = pids(&sup.snapshot_value(), "g");
    sup.handover_prepare().unwrap();
    assert!(matches!(sup.snapshot(), Err(Error::InvalidHandle(_))));
    assert!(matches!(
        sup.handover_prepare(),
        Err(Error::InvalidHandle(_))
    ));
    drop(sup);
    for pid in workers {
        assert_gone(pid);
    }
}

#[test]
fn a_restart_delay_resumes_with_the_time_that_passed() {
    const DELAY_MS: u64 = 3000;
    const BETWEEN: Duration = Duration::from_millis(2000);
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify", "restart": "always", "restart_delay_ms": DELAY_MS}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let first = pids(&sup.snapshot_value(), "g")[0];
    let mut log = Vec::new();
    // SAFETY: plain system call on our own worker.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    wait_events(&sup, &mut log, |l| count(l, "worker_restarting") == 1);
    let restarting = of_kind(&log, "worker_restarting")[0].clone();
    assert_eq!(restarting["delay_ms"], DELAY_MS);
    let fd = sup.handover_prepare().unwrap();
    // The host between its images, for part of the delay: nothing respawns meanwhile.
    std::thread::sleep(BETWEEN);
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
    let spawned = of_kind(&log, "worker_spawned");
    let respawn = spawned.last().unwrap();
    assert_ne!(respawn["pid"], first);
    let waited = respawn["ts_ms"].as_u64().unwrap() - restarting["ts_ms"].as_u64().unwrap();
    // Started again at adoption, the delay would end BETWEEN + DELAY_MS (5 s) after the exit.
    assert!(
        (DELAY_MS..DELAY_MS + 1500).contains(&waited),
        "respawned {waited} ms after the exit: {log:#?}"
    );
    assert_eq!(
        of_kind(&log, "supervisor_adopted")[0]["exited_meanwhile"],
        0
    );
    sup.stop_groups(HANG, true).unwrap();
}

/// A worker that says READY once the file `$GATE` exists, then exits 0 on STOP or EOF.
const GATED: &str = r#"
while [ ! -e "$GATE" ]; do sleep 0.02; done
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) exit 0;; esac
done
"#;

/// A worker that takes 0.5 s to say READY, then exits 0 on STOP or EOF.
const SLOW: &str = r#"
sleep 0.5
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) exit 0;; esac
done
"#;

/// The position of the first event of `kind` (for `worker_id`, when given) in `log`.
fn at(log: &[serde_json::Value], kind: &str, worker_id: Option<&str>) -> usize {
    log.iter()
        .position(|e| e["kind"] == kind && worker_id.is_none_or(|id| e["worker_id"] == id))
        .unwrap_or_else(|| panic!("no {kind} of {worker_id:?}: {log:#?}"))
}

/// A rolling restart crosses the handover in its middle: the prepare succeeds, and the adopting
/// supervisor finishes it; the workers it had replaced keep their pids, and every old worker
/// went only once its replacement was ready (`max_unavailable` 0).
#[test]
fn a_rollout_in_progress_finishes_after_adoption() {
    let sup = supervisor(&[with(sh_group("g", 3, SLOW), json!({"readiness": "notify"}))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let mut log = Vec::new();
    sup.restart_groups(&["g"], &Default::default()).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_replaced") == 1);
    let replaced = of_kind(&log, "worker_replaced")[0].clone();
    let fd = sup.handover_prepare().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    wait_events(&sup, &mut log, |l| {
        count(l, "rollout_finished") == 1 && count(l, "worker_stopped") == 3
    });
    // The rollout was in progress at the handover.
    assert!(at(&log, "supervisor_adopted", None) < at(&log, "rollout_finished", None));
    assert_eq!(count(&log, "worker_replaced"), 3, "{log:#?}");
    let generation = of_kind(&log, "rollout_finished")[0]["generation"].clone();
    let snap = sup.snapshot_value();
    let workers = snap["g"].as_array().unwrap();
    let ids: Vec<&str> = workers
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g#1", "g#2", "g#3"], "{snap}");
    for w in workers {
        assert_eq!(w["generation"], generation, "{snap}");
        assert_eq!(w["ready"], true, "{snap}");
    }
    let id = replaced["worker_id"].as_str().unwrap();
    let slot = workers.iter().find(|w| w["worker_id"] == id).unwrap();
    assert_eq!(slot["pid"], replaced["new_pid"], "{snap}");
    // Each old worker was asked to stop only once its slot's new worker was ready.
    for id in ids {
        let ready = log
            .iter()
            .position(|e| {
                e["kind"] == "worker_ready" && e["worker_id"] == id && e["generation"] == generation
            })
            .unwrap();
        assert!(ready < at(&log, "worker_stopping", Some(id)), "{log:#?}");
    }
    sup.stop_groups(HANG, true).unwrap();
}

/// A worker being stopped crosses the handover with its stop deadline: one that ignores the
/// stop is killed when the deadline that was running falls due, not a whole timeout after the
/// adoption.
#[test]
fn a_stop_in_progress_is_killed_at_its_deadline_after_adoption() {
    const TIMEOUT_MS: u64 = 3000;
    const BETWEEN: Duration = Duration::from_millis(2000);
    let sup = supervisor(&[with(
        sh_group("g", 2, STUBBORN),
        json!({"readiness": "notify", "stop_timeout_ms": TIMEOUT_MS}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let stubborn = pids(&sup.snapshot_value(), "g")[1];
    let mut log = Vec::new();
    sup.scale_group("g", 1).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopping") == 1);
    let fd = sup.handover_prepare().unwrap();
    std::thread::sleep(BETWEEN);
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopped") == 1);
    let stopping = of_kind(&log, "worker_stopping");
    assert_eq!(stopping.len(), 2, "{log:#?}");
    assert_eq!(stopping[0]["mode"], "graceful");
    assert_eq!(stopping[1]["mode"], "forced");
    let stopped = of_kind(&log, "worker_stopped")[0];
    assert_eq!(
        (stopped["pid"].as_i64(), stopped["signal"].as_i64()),
        (Some(stubborn), Some(9))
    );
    assert!(at(&log, "supervisor_adopted", None) < at(&log, "worker_stopped", None));
    let waited = stopping[1]["ts_ms"].as_u64().unwrap() - stopping[0]["ts_ms"].as_u64().unwrap();
    // Started again at adoption, the deadline would end BETWEEN + TIMEOUT_MS after the stop.
    assert!(
        (TIMEOUT_MS..TIMEOUT_MS + 1500).contains(&waited),
        "killed {waited} ms after the stop: {log:#?}"
    );
    assert_gone(stubborn);
    assert_eq!(pids(&sup.snapshot_value(), "g").len(), 1);
    sup.force_terminate_groups(&["g"]).unwrap();
}

/// A group waiting for its dependency crosses the handover and starts in the next image once
/// the dependency is ready.
#[test]
fn a_group_waiting_for_its_dependency_starts_after_adoption() {
    let dir = scratch_dir("handover-depends");
    let gate = dir.join("gate");
    let sup = supervisor(&[
        with(
            sh_group("db", 1, GATED),
            json!({"readiness": "notify", "env": {"GATE": gate}}),
        ),
        with(
            sh_group("web", 2, POLITE),
            json!({"readiness": "notify", "depends_on": {"db": "ready"}}),
        ),
    ]);
    sup.start_groups(&["web"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "group_waiting") == 1 && count(l, "worker_spawned") == 1
    });
    let db = pids(&sup.snapshot_value(), "db");
    let fd = sup.handover_prepare().unwrap();
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    assert!(!sup.wait_ready(Duration::ZERO).unwrap());
    std::fs::write(&gate, b"").unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 3);
    let web_spawned = log
        .iter()
        .position(|e| e["kind"] == "worker_spawned" && e["group_name"] == "web")
        .expect("web spawned");
    assert!(
        at(&log, "supervisor_adopted", None) < web_spawned,
        "{log:#?}"
    );
    let snap = sup.snapshot_value();
    assert_eq!(pids(&snap, "db"), db);
    assert_eq!(ready_pids_of(&snap, "web").len(), 2, "{snap}");
    sup.stop_groups(HANG, true).unwrap();
}

/// A reload in progress (signalled, its `READY=1` not sent yet) crosses the handover: the
/// adopting supervisor waits for its `READY=1`, then `worker_reloaded`.
#[test]
fn a_reload_in_progress_completes_after_adoption() {
    let dir = scratch_dir("handover-reload");
    let gate = dir.join("gate");
    let script = py_reloader(
        r#"while not os.path.exists(os.environ["GATE"]):
    time.sleep(0.02)"#,
    );
    let sup = supervisor(&[json!({"name": "d", "workers": 1,
        "argv": ["python3", "-c", script], "readiness": "sd_notify",
        "control_channel": "off", "env": {"GATE": gate}})]);
    sup.start_groups(&["d"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let pid = pids(&sup.snapshot_value(), "d");
    let mut log = Vec::new();
    sup.reload_groups(&["d"]).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_reloading") == 1);
    let fd = sup.handover_prepare().unwrap();
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    assert_eq!(sup.snapshot_value()["d"][0]["state"], "reloading");
    assert!(!sup.wait_ready(Duration::ZERO).unwrap());
    std::fs::write(&gate, b"").unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    wait_events(&sup, &mut log, |l| count(l, "worker_reloaded") == 1);
    assert!(at(&log, "supervisor_adopted", None) < at(&log, "worker_reloaded", None));
    assert_eq!(pids(&sup.snapshot_value(), "d"), pid);
    assert_eq!(count(&log, "worker_failed"), 0, "{log:#?}");
    sup.stop_groups(HANG, true).unwrap();
}

/// A replacement in progress (`replace_worker`, the new process not ready yet) crosses the
/// handover: once the new process is ready in the next image, the old one is stopped and
/// `worker_recycled`.
#[test]
fn a_replacement_in_progress_completes_after_adoption() {
    let dir = scratch_dir("handover-replace");
    let gate = dir.join("gate");
    std::fs::write(&gate, b"").unwrap();
    let sup = supervisor(&[with(
        sh_group("g", 1, GATED),
        json!({"readiness": "notify", "env": {"GATE": gate}}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let old = pids(&sup.snapshot_value(), "g")[0];
    std::fs::remove_file(&gate).unwrap();
    let _ = drain_all(&sup);
    sup.replace_worker("g#1").unwrap();
    let mut log = Vec::new();
    // Spawned (not in flight): what crosses is the replacement itself.
    wait_events(&sup, &mut log, |l| count(l, "worker_spawned") == 1);
    let fd = sup.handover_prepare().unwrap();
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    assert_eq!(pids(&sup.snapshot_value(), "g").len(), 2);
    std::fs::write(&gate, b"").unwrap();
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_recycled") == 1 && count(l, "worker_stopped") == 1
    });
    let recycled = of_kind(&log, "worker_recycled")[0];
    assert_eq!(recycled["old_pid"], old);
    assert_eq!(of_kind(&log, "worker_stopped")[0]["pid"], old);
    assert_eq!(
        pids(&sup.snapshot_value(), "g"),
        [recycled["new_pid"].as_i64().unwrap()]
    );
    assert_gone(old);
    sup.stop_groups(HANG, true).unwrap();
}

/// Spawns in flight at the prepare (a scale-up just asked for) are waited for and cross as
/// workers: after adoption each new slot has exactly one process, spawned once.
#[test]
fn spawns_in_flight_land_before_the_handover() {
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    sup.scale_group("g", 4).unwrap();
    let fd = sup.handover_prepare().unwrap();
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_spawned"), 4, "{log:#?}");
    let mut live = pids(&sup.snapshot_value(), "g");
    live.sort();
    live.dedup();
    assert_eq!(live.len(), 4);
    assert!(live
        .iter()
        .all(|&p| p > 0 && proc_state(p).is_some_and(|s| s != 'Z')));
    sup.stop_groups(HANG, true).unwrap();
    for pid in live {
        assert_gone(pid);
    }
}

/// The log writer has written every record when prepare returns (nothing is lost at the
/// `exec`), and the adopting supervisor logs on with the same settings, to the same file.
#[test]
fn the_log_is_whole_across_a_handover() {
    let dir = scratch_dir("handover-log");
    let path = dir.path().join("events.jsonl");
    let sup = supervisor(&[with(
        sh_group("g", 3, POLITE),
        json!({"readiness": "notify"}),
    )]);
    let settings = json!({"exporters": [{"kind": "jsonl", "settings": {"path": path}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let fd = sup.handover_prepare().unwrap();
    let text = read(&path);
    assert_eq!(text.matches(".worker_ready\"").count(), 3, "{text}");
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    sup.stop_groups(HANG, true).unwrap();
    drop(sup);
    let text = read(&path);
    assert_eq!(text.matches(".supervisor_adopted\"").count(), 1, "{text}");
    assert_eq!(text.matches(".worker_stopped\"").count(), 3, "{text}");
}

/// Freed after a prepare with logging on: the abort it makes first starts a new log writer and
/// the supervisor stops its workers (this hung once: the abort held the settings' lock while it
/// configured logging, which takes it again).
#[test]
fn a_supervisor_with_logging_freed_after_prepare_does_not_hang() {
    let dir = scratch_dir("handover-free-log");
    let path = dir.path().join("events.jsonl");
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify"}),
    )]);
    let settings = json!({"exporters": [{"kind": "jsonl", "settings": {"path": path}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let workers = pids(&sup.snapshot_value(), "g");
    sup.handover_prepare().unwrap();
    within(HANG, "drop after prepare", move || drop(sup));
    for pid in workers {
        assert_gone(pid);
    }
    // The new writer logged the forced stop.
    assert_eq!(read(&path).matches(".worker_stopped\"").count(), 1);
}

/// Probes cross the handover: their thread is stopped at the prepare (no probe runs between the
/// images), what they showed crosses (a worker unready stays so), and the adopting supervisor
/// probes every worker again.
#[test]
fn probes_resume_after_adoption_with_what_they_showed() {
    let dir = scratch_dir("handover-probes");
    let ok = dir.join("ok");
    let probe = format!("test -e {}", ok.display());
    let sup = supervisor(&[with(
        sh_group("g", 1, "while :; do sleep 1; done"),
        json!({"readiness": "probe", "control_channel": "off",
               "readiness_probe": {"exec": ["/bin/sh", "-c", probe],
                                   "period_ms": 50, "failure_threshold": 2}}),
    )]);
    std::fs::write(&ok, b"").unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let pid = pids(&sup.snapshot_value(), "g")[0];
    let mut log = Vec::new();
    std::fs::remove_file(&ok).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_unready") == 1);
    let fd = sup.handover_prepare().unwrap();
    std::mem::forget(sup);
    let sup = Supervisor::adopt(fd).unwrap();
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["ready"], false, "unready crossed: {snap}");
    assert!(!sup.wait_ready(Duration::ZERO).unwrap());
    std::fs::write(&ok, b"").unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
    assert!(count(&log, "supervisor_adopted") == 1);
    assert_eq!(pids(&sup.snapshot_value(), "g"), [pid]);
    sup.stop_groups(HANG, true).unwrap();
    assert_gone(pid);
}
