//! How workers stop: over the channel, by signal, forced, past a timeout, with their children.

use super::*;

#[test]
fn graceful_stop_over_the_channel_emits_worker_stopped_graceful() {
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pids = pids(&sup.snapshot_value(), "g");
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2);
    for e in &stopped {
        assert_eq!(e["mode"], "graceful");
        assert_eq!(e["exit_code"], 0, "the worker exited on STOP: {e}");
        assert!(e["signal"].is_null());
    }
    assert_eq!(count(&log, "worker_stopping"), 2);
    assert_eq!(count(&log, "worker_ready"), 2);
    assert_eq!(sup.snapshot_value(), json!({}));
    for pid in pids {
        assert_gone(pid);
    }
}

#[test]
fn stop_now_and_stop_drain_reach_the_worker() {
    let dir = scratch_dir("stopline");
    let script = format!(
        r#"echo READY >&3; read -r line <&3; echo "$line" > {}/"$MPSUP_WORKER_ID"; exit 0"#,
        dir.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify"}),
    )]);
    for (drain, expected) in [(true, "STOP DRAIN"), (false, "STOP NOW")] {
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        sup.stop_groups(secs(30.0), drain).unwrap();
        assert_eq!(read(&dir.join("g#1")).trim(), expected);
    }
}

#[test]
fn forced_stop_emits_worker_stopped_forced_with_signal_9() {
    let sup = supervisor(&[sh_group("g", 2, POLITE)]);
    sup.start_groups(&["g"]).unwrap();
    let pids = pids(&sup.snapshot_value(), "g");
    sup.force_terminate_groups(&["g"]).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2);
    for e in stopped {
        assert_eq!(e["mode"], "forced");
        assert_eq!(e["signal"], 9);
        assert!(e["exit_code"].is_null());
    }
    assert_eq!(of_kind(&log, "worker_stopping")[0]["mode"], "forced");
    for pid in pids {
        assert_gone(pid);
    }
    // A configured group with no workers: a no-op.
    sup.force_terminate_groups(&["g"]).unwrap();
    assert!(drain_all(&sup).is_empty());
}

#[test]
fn fallback_path_stops_by_signal() {
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"control_channel": "off", "readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["has_stop_event"], false);
    assert_eq!(snap["g"][0]["stop_strategy"], "terminate_fallback");
    assert_eq!(snap["g"][0]["control_channel"], "unavailable");
    // "notify" without a channel falls back to warm-up readiness.
    let log = drain_all(&sup);
    assert_eq!(log[0]["readiness"], "warmup");
    assert_eq!(log[0]["stop_strategy"], "terminate_fallback");
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["mode"], "graceful");
    assert_eq!(stopped[0]["signal"], libc::SIGTERM);
}

#[test]
fn stop_signal_is_configurable() {
    let sup = supervisor(&[with(
        sh_group("g", 1, "exec sleep 1000000"),
        json!({"control_channel": "off", "stop_signal": "SIGINT", "warmup_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), false).unwrap();
    let log = drain_all(&sup);
    assert_eq!(of_kind(&log, "worker_stopped")[0]["signal"], libc::SIGINT);
}

#[test]
fn a_worker_that_ignores_stop_times_out_then_force_ends_it() {
    let sup = supervisor(&[with(
        sh_group("g", 1, STUBBORN),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pid = pids(&sup.snapshot_value(), "g")[0];
    match sup.stop_groups(secs(0.2), true) {
        Err(Error::Timeout(m)) => {
            assert_eq!(m, "worker 'g#1' did not stop within graceful timeout")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["state"], "stopping");
    assert_eq!(snap["g"][0]["alive"], true);
    sup.force_terminate_groups(&["g"]).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 1, "exactly one worker_stopped: {log:#?}");
    assert_eq!(stopped[0]["mode"], "forced");
    assert_eq!(stopped[0]["signal"], 9);
    assert_eq!(sup.snapshot_value(), json!({}));
    assert_gone(pid);
}

/// Whether process `pid` ignores SIGTERM (bit 15 of `SigIgn` in /proc/PID/status).
fn ignores_sigterm(pid: i64) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

#[test]
fn a_stubborn_fallback_worker_ignoring_sigterm_times_out_too() {
    let sup = supervisor(&[with(
        sh_group("g", 1, "trap '' TERM; exec sleep 1000000"),
        json!({"control_channel": "off", "warmup_ms": 1}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    // Ready after 1 ms says nothing of the shell's `trap`: wait until the worker really
    // ignores SIGTERM, or the stop's SIGTERM may come first and end it.
    let pid = pids(&sup.snapshot_value(), "g")[0];
    let deadline = Instant::now() + HANG;
    while !ignores_sigterm(pid) {
        assert!(
            Instant::now() < deadline,
            "the worker never ignored SIGTERM"
        );
        std::thread::yield_now();
    }
    assert!(matches!(
        sup.stop_groups(secs(0.1), false),
        Err(Error::Timeout(_))
    ));
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
}

/// A ready worker that started a child in its process group, then runs `rest` (shell); returns
/// the supervisor, the worker's pid and the child's pid.
fn worker_with_a_child(tag: &str, rest: &str) -> (mpsupervisor::Supervisor, i64, i64) {
    let dir = scratch_dir(tag);
    let script = format!(
        "sleep 1000000 & echo $! > {}/child; echo READY >&3; {rest}",
        dir.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let child: i64 = read(&dir.join("child")).trim().parse().unwrap();
    let pid = pids(&sup.snapshot_value(), "g")[0];
    assert!(matches!(proc_state(child), Some(s) if s != 'Z'));
    (sup, pid, child)
}

#[test]
fn force_kills_the_workers_own_children_too() {
    let (sup, pid, child) = worker_with_a_child("child", "wait");
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_gone(pid);
    assert_dead(child);
}

#[test]
fn a_graceful_stop_kills_what_the_worker_left_in_its_group() {
    // The worker exits on STOP but leaves its child running in its process group.
    let (sup, pid, child) = worker_with_a_child("leftover", "read -r x <&3; exit 0");
    sup.stop_groups(secs(30.0), false).unwrap();
    assert_gone(pid);
    assert_dead(child);
}

/// Kills a process the test expected dead when the test fails, so that a failure leaves
/// nothing running (the supervisor does not know a worker's leftover once the worker is gone).
struct KillIfFailing(i64);

impl Drop for KillIfFailing {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A second, independent check of the reaper's group kill: a worker that exits on its own (no
/// stop asked for) leaves a child in its process group; the child is dead once the exit is
/// reported, while the supervisor keeps running and before anything is stopped.
#[test]
fn a_worker_that_exits_on_its_own_takes_what_it_left_in_its_group() {
    let (sup, pid, child) = worker_with_a_child("crash", "trap 'exit 7' USR1; wait");
    let _leftover = KillIfFailing(child);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        of_kind(l, "worker_failed")
            .iter()
            .any(|e| e["pid"] == pid && e["exit_code"] == 7)
    });
    assert_dead(child);
    sup.force_terminate_groups(&["g"]).unwrap();
}

#[test]
fn a_worker_that_exits_at_once_fails_once_and_stays_until_stopped() {
    let sup = supervisor(&[sh_group("g", 1, "exit 3")]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(failed["reason"], "exited");
    assert_eq!(failed["exit_code"], 3);
    assert!(failed["signal"].is_null());
    assert!(
        !sup.wait_ready(secs(60.0)).unwrap(),
        "a failed worker makes wait_ready false at once"
    );
    let snap = sup.snapshot_value();
    assert_eq!(snap["g"][0]["alive"], false);
    assert_eq!(snap["g"][0]["state"], "failed");
    assert_eq!(snap["g"][0]["exit_code"], 3);
    assert_gone(snap["g"][0]["pid"].as_i64().unwrap());
    sup.stop_groups(secs(1.0), true).unwrap();
    let log = drain_all(&sup);
    assert_eq!(
        count(&log, "worker_stopped"),
        0,
        "a failed worker gets no worker_stopped"
    );
    assert_eq!(count(&log, "worker_failed"), 0, "worker_failed comes once");
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn a_killed_worker_reports_its_signal() {
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pid = pids(&sup.snapshot_value(), "g")[0];
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(of_kind(&log, "worker_failed")[0]["signal"], 9);
}

#[test]
fn restarting_a_running_group_force_stops_the_old_workers_first() {
    // Workers that cannot become ready while the events are read (no worker_ready among them).
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"warmup_ms": 600_000}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let old = pids(&sup.snapshot_value(), "g");
    drain_all(&sup);
    sup.start_groups(&["g"]).unwrap();
    let new = pids(&sup.snapshot_value(), "g");
    assert_eq!(new.len(), 2);
    assert!(old.iter().all(|p| !new.contains(p)));
    for pid in old {
        assert_gone(pid);
    }
    let log = drain_all(&sup);
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "worker_stopping",
            "worker_stopping",
            "worker_stopped",
            "worker_stopped",
            "worker_spawned",
            "worker_spawned",
            "supervisor_start_groups"
        ]
    );
}
