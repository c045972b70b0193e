//! Handover through the Rust face, in one process: a supervisor freed after a prepare (no exec)
//! still stops its workers, and a restart delay that was running when the state was written
//! resumes with the time that passed rather than starting again. The adopting supervisor is
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

/// A change in progress (here a rolling restart whose new worker is not ready yet) makes the
/// prepare wait for nothing: it is refused with NotReady, and the change goes on.
#[test]
fn a_change_in_progress_is_not_handed_over() {
    let slow = "sleep 1; echo READY >&\"$MPSUP_CONTROL_FD\"; \
                while read -r l <&\"$MPSUP_CONTROL_FD\"; do case \"$l\" in STOP*) exit 0;; esac; done";
    let sup = supervisor(&[with(sh_group("g", 1, slow), json!({"readiness": "notify"}))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    sup.restart_groups(&["g"], &Default::default()).unwrap();
    match sup.handover_prepare() {
        Err(Error::NotReady(m)) => assert!(m.contains("rollout"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Once the rollout is over and the old worker gone, it goes.
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "rollout_finished") == 1 && count(l, "worker_stopped") == 1
    });
    let fd = sup.handover_prepare().unwrap();
    assert!(fd > 2);
    sup.handover_abort().unwrap();
    sup.stop_groups(HANG, true).unwrap();
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
