//! One host image hands its workers to the next: what they keep, what is seen between the
//! images, and what an abort, a killed host or a foreign state does.

use super::*;

/// The new image has the same workers, the events of the first image, `supervisor_adopted`,
/// no descriptor of the library left inheritable, and a graceful stop reaches every worker over
/// the control socket the first image made (only `STOP` on it ends them with 0).
#[test]
fn the_next_image_adopts_the_same_workers() {
    let killer = Killer::default();
    let mut run = Run::start("basic", &polite(3), &[]);
    let before = run.json("SNAPSHOT");
    killer.add(&worker_pids(&before));
    run.until("ADOPTED");
    let after = run.json("SNAPSHOT");
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    assert_eq!(worker_pids(&after), worker_pids(&before), "{after}");
    assert!(after["g"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == true));
    let log = run.finish();
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{log:#?}"
    );
    // What the first image left undrained comes first.
    let adopted = log
        .iter()
        .position(|e| e["kind"] == "supervisor_adopted")
        .expect("supervisor_adopted");
    assert_eq!(count(&log[..adopted], "worker_spawned"), 3, "{log:#?}");
    assert_eq!(log[adopted]["workers"], 3);
    assert_eq!(log[adopted]["exited_meanwhile"], 0);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 3, "{log:#?}");
    for e in stopped {
        assert_eq!(e["mode"], "graceful", "{e}");
        assert_eq!(e["exit_code"], 0, "{e}");
    }
    for pid in worker_pids(&before) {
        assert_gone(pid);
    }
}

/// A rolling restart of workers that take 0.5 s to be ready crosses an `exec` in its middle:
/// the prepare succeeds, the new image finishes the rollout (every worker of the new
/// generation), the worker replaced before the `exec` keeps its pid, and the old workers stopped
/// after it get `STOP` over the control sockets the first image made (graceful, exit 0).
#[test]
fn a_rollout_crosses_the_exec_and_finishes() {
    let killer = Killer::default();
    let slow = POLITE.replacen("echo READY", "sleep 0.5; echo READY", 1);
    let groups = json!([with(
        sh_group("g", 3, &slow),
        json!({"readiness": "notify"})
    )]);
    let mut run = Run::start("rolling", &groups.to_string(), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let first = events(&run.until("EVENTS1"));
    let replaced: Vec<&Value> = of_kind(&first, "worker_replaced");
    assert_eq!(replaced.len(), 1, "{first:#?}");
    killer.add(&[replaced[0]["new_pid"].as_i64().unwrap()]);
    run.until("ADOPTED");
    let after = run.json("SNAPSHOT");
    killer.add(&worker_pids(&after));
    let log = run.finish();
    let adopted = log
        .iter()
        .position(|e| e["kind"] == "supervisor_adopted")
        .expect("supervisor_adopted");
    let finished = log
        .iter()
        .position(|e| e["kind"] == "rollout_finished")
        .expect("rollout_finished");
    assert!(adopted < finished, "{log:#?}");
    assert_eq!(count(&log, "worker_replaced"), 2, "{log:#?}");
    let generation = &log[finished]["generation"];
    let workers = after["g"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{after}");
    assert!(workers
        .iter()
        .all(|w| &w["generation"] == generation && w["ready"] == true));
    let slot = &replaced[0]["worker_id"];
    let kept = workers.iter().find(|w| &w["worker_id"] == slot).unwrap();
    assert_eq!(kept["pid"], replaced[0]["new_pid"], "{after}");
    // Old workers stopped after the exec, over the first image's control sockets.
    let old_stopped: Vec<&Value> = of_kind(&log, "worker_stopped")
        .into_iter()
        .filter(|e| e["generation"] != *generation)
        .collect();
    assert!(!old_stopped.is_empty(), "{log:#?}");
    for e in old_stopped {
        assert!(before.contains(&e["pid"].as_i64().unwrap()));
        assert_eq!(
            (&e["mode"], &e["exit_code"]),
            (&json!("graceful"), &json!(0)),
            "{e}"
        );
    }
    for pid in before {
        assert_gone(pid);
    }
}

/// A worker that exits while the host is between images is seen by the next one and goes
/// through the restart policy; the others keep their pids.
#[test]
fn an_exit_between_the_images_is_seen_and_respawned() {
    let killer = Killer::default();
    let mut run = Run::start("meanwhile", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let exited = run.until("EXITED");
    assert_eq!(
        exited,
        format!("{} Z", before[0]),
        "unreaped until the next image"
    );
    run.until("ADOPTED");
    let after = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&after);
    let log = run.finish();
    assert_eq!(after.len(), 3);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);
    let adopted = of_kind(&log, "supervisor_adopted");
    assert_eq!(adopted[0]["exited_meanwhile"], 1, "{log:#?}");
    let failed = of_kind(&log, "worker_failed");
    assert_eq!(failed.len(), 1, "{log:#?}");
    assert_eq!(failed[0]["pid"], before[0]);
    assert_eq!(failed[0]["signal"], libc::SIGTERM);
    assert!(of_kind(&log, "worker_spawned")
        .iter()
        .any(|e| e["pid"] == after[0]));
    assert_eq!(count(&log, "worker_stopped"), 3, "{log:#?}");
}

/// `abort` after `prepare` (an `exec` that failed): meanwhile the handle refuses calls; after
/// it the library's descriptors are close-on-exec again, the memfd closed, and the handle
/// stops its workers gracefully as usual.
#[test]
fn abort_leaves_a_live_handle() {
    let killer = Killer::default();
    let mut run = Run::start("abort", &polite(2), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    assert_eq!(run.until("LOCKED"), "MPSUP_ERR_INVALID_HANDLE");
    let after = worker_pids(&run.json("SNAPSHOT"));
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    assert_eq!(after, before);
    let log = run.finish();
    assert_stopped_with_0(&log, 2);
}

/// The keeper watches the same pid across the handover: a host SIGKILLed between prepare and
/// adopt still takes every worker with it.
#[test]
fn a_host_killed_between_prepare_and_adopt_takes_its_workers() {
    let killer = Killer::default();
    let mut run = Run::start("die", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let status = run.json("STATUS");
    assert_eq!(status["guarantees"]["host_death"], "keeper", "{status}");
    run.until("PREPARED");
    assert!(before.iter().all(|&p| alive(p)));
    let host = run.host.pid();
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(host, libc::SIGKILL) };
    run.host.wait_within(HANG).expect("the host did not die");
    assert!(
        all_die(&before, Duration::from_secs(10)),
        "workers outlived their host: {before:?}"
    );
}

/// A state whose format this library does not read is refused naming both versions, and its
/// workers are killed rather than left without a supervisor.
#[test]
fn a_state_of_another_format_is_refused_and_its_workers_killed() {
    let killer = Killer::default();
    let mut run = Run::start("badversion", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let refused = run.until("REFUSED");
    assert!(
        refused.starts_with("MPSUP_ERR_INVALID_ARGUMENT "),
        "{refused}"
    );
    let version = env!("CARGO_PKG_VERSION");
    for needle in [
        format!("written by mpsupervisor {version} (state format 9)"),
        format!("this is mpsupervisor {version} (state format 2)"),
        "its workers were killed".to_string(),
    ] {
        assert!(refused.contains(&needle), "{needle:?} not in {refused}");
    }
    // Killed and reaped by the refusing image, before the call returned.
    for &pid in &before {
        assert!(!alive(pid), "worker {pid} outlived the refusal");
    }
    assert_eq!(run.exit_code(), Some(0));
}
