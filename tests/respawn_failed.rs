//! A respawn that cannot be spawned (the group's `cwd` was removed after the first spawn): the
//! snapshot shows no pid for the worker (not the dead process's), and the status shows the
//! failed group as not started.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_failed_respawn_leaves_no_pid_in_the_snapshot_and_the_failed_group_is_not_started() {
    let dir = TempDir::new("respawn-failed");
    let cwd = dir.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let sup = supervisor(&[with(
        sh_group("g", 1, "exec sleep 1000000"),
        json!({"control_channel": "off", "warmup_ms": 1, "cwd": cwd,
               "restart": "always", "restart_delay_ms": 0, "max_restarts": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(common::secs(60.0)).unwrap());
    let first = pids(&sup.snapshot_value(), "g")[0];
    std::fs::remove_dir(&cwd).unwrap();
    // SAFETY: a signal to our own worker, which has not been reaped.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "group_failed") == 1);
    assert_eq!(count(&log, "worker_spawn_failed"), 1, "{log:#?}");
    assert_gone(first);
    let snap = sup.snapshot_value();
    let w = &snap["g"][0];
    assert_eq!(
        (&w["pid"], &w["os_pid"], &w["alive"], &w["state"]),
        (&json!(0), &json!(0), &json!(false), &json!("failed")),
        "{w:#}"
    );
    let status = &sup.status_value()["groups"]["g"];
    assert_eq!(
        (&status["started"], &status["failed"], &status["target"]),
        (&json!(false), &json!(true), &json!(0)),
        "{status:#}"
    );
}
