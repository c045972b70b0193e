//! The engine under pressure: healthy workers next to a crash loop, a panic between a spawn and
//! its adoption, a free behind a stop that would never end, a worker its host may not kill.

mod common;
mod hosts;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mpsupervisor::{Error, Options, Supervisor};
use serde_json::{json, Value};

/// Waits (bounded) until a process is gone: a child the library killed is reaped soon after.
fn wait_reaped(pid: i64) {
    let deadline = Instant::now() + HANG;
    while proc_state(pid).is_some() {
        assert!(Instant::now() < deadline, "process {pid} was never reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn heartbeating_workers_next_to_a_crash_loop_are_never_failed_and_host_calls_stay_quick() {
    let heartbeat = "echo READY >&3; while :; do echo HEARTBEAT >&3; sleep 0.2; done";
    let sup = supervisor(&[
        with(
            sh_group("beat", 30, heartbeat),
            json!({"readiness": "notify", "heartbeat_timeout_ms": 1500}),
        ),
        json!({"name": "crash", "workers": 100, "argv": ["/bin/true"], "restart": "always",
               "restart_delay_ms": 1, "restart_delay_max_ms": 1, "max_restarts": 1_000_000,
               "restart_window_ms": 1000, "control_channel": "off"}),
    ]);
    sup.start_groups(&["beat", "crash"]).unwrap();
    let mut spawned = 0;
    let mut failed_beats = Vec::new();
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let t0 = Instant::now();
        let snap = sup.snapshot_value();
        let events = drain_all(&sup);
        slowest = slowest.max(t0.elapsed());
        assert!(snap["beat"].is_array());
        spawned += count(&events, "worker_spawned");
        failed_beats.extend(
            events
                .into_iter()
                .filter(|e| e["kind"] == "worker_failed" && e["group_name"] == "beat"),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sup.force_terminate_groups(&["beat", "crash"]).unwrap();
    assert!(
        failed_beats.is_empty(),
        "healthy workers failed: {failed_beats:#?}"
    );
    assert!(spawned > 500, "the crash loop ran: {spawned} spawns");
    // The benchmark measures the real figure; this only catches a lock held for seconds.
    assert!(
        slowest < Duration::from_secs(2),
        "a host call took {slowest:?}"
    );
}

static PANICKED_PID: AtomicI32 = AtomicI32::new(0);

fn panic_after_spawn(pid: i32) {
    PANICKED_PID.store(pid, Ordering::SeqCst);
    panic!("injected between spawn and adoption");
}

#[test]
fn a_panic_between_spawn_and_adoption_leaves_no_live_child() {
    let sup = Supervisor::with_options(Options {
        spawn_hook: Some(panic_after_spawn),
        ..Options::default()
    })
    .unwrap();
    sup.configure_json(&json!([sh_group("g", 1, STUBBORN)]).to_string())
        .unwrap();
    match sup.start_groups(&["g"]) {
        Err(Error::Spawn { source, .. }) => assert!(source.to_string().contains("panic")),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    let pid = PANICKED_PID.load(Ordering::SeqCst);
    assert!(pid > 0, "the hook ran");
    wait_reaped(pid as i64);
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn free_is_not_held_up_by_a_stop_that_would_wait_forever() {
    let sup = std::sync::Arc::new(supervisor(&[sh_group("g", 2, STUBBORN)]));
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pids = pids(&sup.snapshot_value(), "g");
    let stopper = {
        let sup = std::sync::Arc::clone(&sup);
        std::thread::spawn(move || sup.stop_groups(secs(1e9), true))
    };
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopping") == 2);
    let t0 = Instant::now();
    sup.shutdown().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "free took {:?}",
        t0.elapsed()
    );
    let stopped = stopper.join().unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    for pid in pids {
        assert_gone(pid);
    }
}

/// Kills a process (as root) when dropped, so that a failing test leaves nothing running.
struct KillOnDrop(i64);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: plain kill of a pid this test started (indirectly).
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
            assert_dead(self.0);
        }
    }
}

#[test]
fn a_worker_its_host_may_not_kill_is_reported_and_force_and_free_stay_bounded() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to install a set-user-ID worker");
        return;
    }
    let dir = TempDir::new("unkillable");
    // World-traversable, so that the unprivileged host can run the worker from here.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sleeper_build = build_c(
        "setuid_sleeper",
        &["tests/programs/setuid_sleeper.c"],
        false,
        &[],
    );
    let sleeper = dir.path().join("setuid_sleeper");
    std::fs::copy(&sleeper_build, &sleeper).unwrap();
    std::fs::set_permissions(&sleeper, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let host = build_c(
        "unkillable_host",
        &["tests/programs/unkillable_host.c"],
        true,
        &[],
    );
    // Killed and reaped whatever happens, as is the worker (by root, below).
    let mut child = hosts::Guard::new(
        std::process::Command::new(&host)
            .arg(&sleeper)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.child().stdout.take().unwrap()).lines();
    let snapshot = lines.next().unwrap().unwrap();
    let snapshot: Value =
        serde_json::from_str(snapshot.strip_prefix("snapshot ").unwrap()).unwrap();
    let _guard = KillOnDrop(pids(&snapshot, "u")[0]);
    let force = lines.next().unwrap().unwrap();
    let events = lines.next().unwrap().unwrap();
    let free = lines.next().unwrap().unwrap();
    let status = child.wait_within(HANG);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    for (line, call) in [(&force, "force"), (&free, "free")] {
        let words: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(words[0], call);
        assert_eq!(words[1], "MPSUP_ERR_TIMEOUT", "{line}");
        let ms: f64 = words[2].parse().unwrap();
        // The kill failed with EPERM at once: nothing is waited for (KILL_BOUND is for a worker
        // that got SIGKILL and does not die).
        assert!(
            ms < 2_500.0,
            "{call} took {ms} ms (KILL_BOUND {:?})",
            mpsupervisor::KILL_BOUND
        );
        assert!(words[3].contains("u#1"), "{line}");
    }
    assert!(force.contains("Operation not permitted"), "{force}");
    let events: Value = serde_json::from_str(events.strip_prefix("events ").unwrap()).unwrap();
    let unkillable = of_kind(events.as_array().unwrap(), "worker_unkillable");
    assert_eq!(unkillable.len(), 1, "{events}");
    let error = unkillable[0]["error"].as_str().unwrap();
    assert!(error.contains("Operation not permitted"), "{error}");
}

#[test]
fn a_respawn_that_cannot_be_spawned_says_so_once_per_try_without_a_stale_pid() {
    let dir = TempDir::new("respawn-cwd");
    let cwd = dir.path().join("gone-soon");
    std::fs::create_dir(&cwd).unwrap();
    let sup = supervisor(&[with(
        sh_group("g", 1, "echo READY >&3; exec sleep 1000000"),
        json!({"readiness": "notify", "cwd": cwd, "restart": "always", "restart_delay_ms": 1,
               "restart_delay_max_ms": 1, "max_restarts": 3}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    // Its working directory goes, so no respawn can chdir there.
    std::fs::remove_dir(&cwd).unwrap();
    let pid = pids(&sup.snapshot_value(), "g")[0];
    // SAFETY: killing our own worker.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "group_failed") == 1);
    let spawn_failed = of_kind(&log, "worker_spawn_failed");
    assert!(!spawn_failed.is_empty(), "{log:#?}");
    for e in &spawn_failed {
        assert!(e.get("pid").is_none(), "no stale pid: {e}");
        assert!(e["error"].as_str().unwrap().contains("No such file"), "{e}");
    }
    // One end event per spawned pid: the only process ever spawned ended once.
    let spawned: Vec<i64> = of_kind(&log, "worker_spawned")
        .iter()
        .map(|e| e["pid"].as_i64().unwrap())
        .collect();
    let ended: Vec<i64> = log
        .iter()
        .filter(|e| e["kind"] == "worker_failed" || e["kind"] == "worker_stopped")
        .map(|e| e["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(spawned, [pid]);
    assert_eq!(ended, [pid]);
    assert_gone(pid);
}
