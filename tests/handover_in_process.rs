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
