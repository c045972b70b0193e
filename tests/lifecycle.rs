//! The original's contracts and the lifecycle of real worker processes, through the Rust API.

mod common;

use common::*;
use mpsupervisor::{Error, Options, Supervisor};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn wait_ready_zero_is_false_after_start() {
    // A worker that cannot be ready yet; a wait that did not return at once would fail here.
    let sup = std::sync::Arc::new(supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"warmup_ms": 600_000}),
    )]));
    sup.start_groups(&["g"]).unwrap();
    let waits = within(Duration::from_secs(10), "wait_ready(0)", {
        let sup = sup.clone();
        move || {
            let start = Instant::now();
            (sup.wait_ready(Duration::ZERO).unwrap(), start.elapsed())
        }
    });
    assert!(!waits.0);
    assert!(waits.1 < Duration::from_secs(1), "{:?}", waits.1);
}

#[test]
fn wait_ready_without_workers_is_false_at_once() {
    let sup = supervisor(&[sh_group("g", 1, POLITE)]);
    // A wait that sat out its timeout would take 20 s.
    let start = Instant::now();
    assert!(!sup.wait_ready(secs(20.0)).unwrap());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn two_workers_appear_in_the_snapshot_right_after_start() {
    let sup = supervisor(&[sh_group("execution.cpu", 2, POLITE)]);
    sup.start_groups(&["execution.cpu"]).unwrap();
    let snap = sup.snapshot_value();
    let workers = snap["execution.cpu"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["worker_id"], format!("execution.cpu#{}", i + 1));
        assert_eq!(w["pid"], w["os_pid"]);
        assert_eq!(w["pid"], w["pgid"]);
        assert_eq!(w["alive"], true);
        assert_eq!(w["has_stop_event"], true);
        assert_eq!(w["stop_strategy"], "event");
        assert_eq!(w["control_channel"], "socketpair");
        assert!(w["state"] == "starting" || w["state"] == "ready");
        assert!(w["started_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
}

#[test]
fn start_emits_spawned_per_worker_then_start_groups() {
    // Workers that cannot become ready while the events are read (no worker_ready among them).
    let not_yet = json!({"warmup_ms": 600_000});
    let sup = supervisor(&[
        with(sh_group("a", 2, POLITE), not_yet.clone()),
        with(sh_group("b", 1, POLITE), not_yet),
    ]);
    sup.start_groups(&["a", "b"]).unwrap();
    let log = drain_all(&sup);
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "worker_spawned",
            "worker_spawned",
            "worker_spawned",
            "supervisor_start_groups"
        ]
    );
    assert_eq!(log[3]["group_count"], 2);
    assert_eq!(log[3]["worker_count"], 3);
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(log[0]["worker_id"], "a#1");
    assert_eq!(log[2]["group_name"], "b");
    assert_eq!(log[0]["readiness"], "warmup");
}

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

#[test]
fn notify_readiness_waits_for_ready_and_emits_it_once() {
    let script = "echo NOISE >&3; echo READY >&3; echo READY >&3; read -r x <&3";
    let sup = supervisor(&[with(
        sh_group("g", 3, script),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    assert!(snap["g"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == true && w["state"] == "ready"));
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_ready"), 3);
}

#[test]
fn a_notify_worker_that_never_says_ready_is_not_ready() {
    let sup = supervisor(&[with(
        sh_group("g", 1, "read -r x <&3"),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(!sup.wait_ready(secs(0.2)).unwrap());
    assert_eq!(sup.snapshot_value()["g"][0]["state"], "starting");
}

#[test]
fn unknown_group_spawns_nothing() {
    let sup = supervisor(&[sh_group("g", 1, POLITE)]);
    assert!(matches!(sup.start_groups(&["g", "nope"]), Err(Error::UnknownGroup(n)) if n == "nope"));
    assert_eq!(sup.snapshot_value(), json!({}));
    assert!(drain_all(&sup).is_empty());
    assert!(matches!(
        sup.force_terminate_groups(&["nope"]),
        Err(Error::UnknownGroup(_))
    ));
}

#[test]
fn a_spawn_failure_kills_and_reaps_what_the_call_spawned() {
    let sup = supervisor(&[
        sh_group("ok", 2, POLITE),
        json!({"name": "bad", "argv": ["/nonexistent/worker"]}),
    ]);
    match sup.start_groups(&["ok", "bad"]) {
        Err(Error::Spawn { context, source }) => {
            assert!(context.contains("bad#1"), "{context}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_eq!(sup.snapshot_value(), json!({}));
    let log = drain_all(&sup);
    for e in of_kind(&log, "worker_spawned") {
        assert_gone(e["pid"].as_i64().unwrap());
    }
    assert_eq!(count(&log, "worker_stopped"), 2);
}

#[test]
fn a_non_executable_file_is_a_spawn_error() {
    let dir = scratch_dir("noexec");
    let path = dir.join("not-executable");
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    let sup = supervisor(&[json!({"name": "g", "argv": [path]})]);
    assert!(matches!(sup.start_groups(&["g"]), Err(Error::Spawn { .. })));
}

#[test]
fn argv0_without_a_slash_is_searched_in_path() {
    let sup = supervisor(&[
        json!({"name": "g", "argv": ["sleep", "1000000"], "warmup_ms": 1, "control_channel": "off"}),
    ]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
}

#[test]
fn environment_cwd_and_output_are_honoured() {
    let dir = scratch_dir("env");
    let out = dir.join("out.txt");
    std::fs::write(&out, "old\n").unwrap();
    let script = r#"echo "$MPSUP_GROUP $MPSUP_WORKER_ID $MPSUP_CONTROL_FD $KEY $(pwd) ${HOME:-nohome}"; echo READY >&3; read -r x <&3"#;
    let sup = supervisor(&[with(
        sh_group("g", 1, script),
        json!({"readiness": "notify", "env": {"KEY": "VALUE", "PATH": "/usr/bin:/bin"}, "inherit_env": false,
               "cwd": dir, "stdout": {"file": out, "append": true}, "stderr": "null"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    let text = read(&out);
    assert_eq!(
        text,
        format!("old\ng g#1 3 VALUE {} nohome\n", dir.display())
    );
}

#[test]
fn workers_inherit_only_0_1_2_and_their_control_socket() {
    let dir = scratch_dir("fds");
    let program = build_c("report", &["tests/programs/report.c"], false, &[]);
    // A descriptor the host forgot to mark close-on-exec must not reach the workers.
    let mut leak = [0; 2];
    // SAFETY: plain pipe(2) into a valid array.
    assert_eq!(unsafe { libc::pipe(leak.as_mut_ptr()) }, 0);
    let group = |name: &str, channel: &str| {
        json!({"name": name, "argv": [program], "readiness": "notify", "control_channel": channel,
               "stdout": {"file": dir.join(name), "append": false}})
    };
    let sup = supervisor(&[group("with", "auto"), group("without", "off")]);
    sup.start_groups(&["with", "without"]).unwrap();
    let mut log = Vec::new();
    // The channel-less worker exits right after its report; the other says READY after it.
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_failed") == 1
            && of_kind(l, "worker_ready")
                .iter()
                .any(|e| e["worker_id"] == "with#1")
    });
    sup.stop_groups(secs(30.0), true).unwrap();
    // SAFETY: closing our own pipe.
    unsafe {
        libc::close(leak[0]);
        libc::close(leak[1]);
    }
    let fds = |name: &str| -> Vec<u32> {
        let text = read(&dir.join(name));
        let mut v: Vec<u32> = text
            .lines()
            .filter_map(|l| l.strip_prefix("fd ")?.parse().ok())
            .collect();
        v.sort();
        v
    };
    assert_eq!(fds("with"), [0, 1, 2, 3]);
    assert_eq!(fds("without"), [0, 1, 2]);
}

#[test]
fn the_worker_starts_with_an_empty_mask_default_signals_and_its_own_group() {
    let dir = scratch_dir("sig");
    let program = build_c("report", &["tests/programs/report.c"], false, &[]);
    let report = dir.join("report");
    let sup = supervisor(&[
        json!({"name": "g", "argv": [program], "readiness": "notify",
                                  "stdout": {"file": report, "append": false}}),
    ]);
    // Block every signal and ignore one in the host thread; the worker must inherit neither.
    // SAFETY: signal-mask and disposition calls with valid sets; restored below.
    let old = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGUSR2, libc::SIG_IGN)
    };
    sup.start_groups(&["g"]).unwrap();
    // SAFETY: restores what was changed above.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGUSR2, old);
    }
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pid = pids(&sup.snapshot_value(), "g")[0];
    sup.stop_groups(secs(30.0), true).unwrap();
    let text = read(&report);
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
    assert!(text.contains(&format!("pgid {pid} pid {pid}\n")), "{text}");
}

#[test]
fn exits_are_seen_without_pidfd() {
    let sup = Supervisor::with_options(Options {
        use_pidfd: false,
        ..Options::default()
    })
    .unwrap();
    let groups = json!([
        sh_group("quits", 1, "exit 4"),
        with(sh_group("g", 1, POLITE), json!({"readiness": "notify"})),
        with(
            sh_group("nochan", 1, "exec sleep 1000000"),
            json!({"control_channel": "off", "warmup_ms": 1})
        )
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    sup.start_groups(&["quits", "g", "nochan"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_failed") == 1 && count(l, "worker_ready") == 2
    });
    assert_eq!(of_kind(&log, "worker_failed")[0]["exit_code"], 4);
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_stopped"), 2);
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn a_line_over_4096_bytes_is_a_protocol_error_and_stop_falls_back_to_the_signal() {
    // The worker survives the supervisor closing the channel under it (EPIPE, not SIGPIPE).
    let script =
        "trap '' PIPE; (head -c 100000 /dev/zero | tr '\\0' x >&3) 2>/dev/null; echo >&3; exec sleep 1000000";
    let sup = supervisor(&[with(sh_group("g", 1, script), json!({"warmup_ms": 1}))]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_protocol_error") == 1);
    assert_eq!(
        of_kind(&log, "worker_protocol_error")[0]["worker_id"],
        "g#1"
    );
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert_eq!(of_kind(&log, "worker_stopped")[0]["signal"], libc::SIGTERM);
}

#[test]
fn events_are_bounded_and_report_what_was_dropped() {
    let sup = Supervisor::with_options(Options {
        event_capacity: 4,
        ..Options::default()
    })
    .unwrap();
    // Workers that cannot become ready meanwhile: worker_ready events would change the count.
    sup.configure_json(
        &json!([with(
            sh_group("g", 5, POLITE),
            json!({"warmup_ms": 600_000})
        )])
        .to_string(),
    )
    .unwrap();
    sup.start_groups(&["g"]).unwrap();
    let first = drain_all(&sup);
    assert_eq!(first.len(), 4);
    sup.force_terminate_groups(&["g"]).unwrap();
    let rest = drain_all(&sup);
    assert_eq!(rest[0]["kind"], "events_dropped");
    assert_eq!(
        rest[0]["count"], 2,
        "one worker_spawned and supervisor_start_groups were dropped"
    );
    assert_eq!(rest[0]["seq"], 5);
}

#[test]
fn wait_ready_does_not_block_snapshot_or_drain_and_stop_wakes_it() {
    let sup = std::sync::Arc::new(supervisor(&[with(
        sh_group("g", 1, "read -r x <&3"),
        json!({"readiness": "notify"}),
    )]));
    sup.start_groups(&["g"]).unwrap();
    let waiter = {
        let sup = sup.clone();
        std::thread::spawn(move || sup.wait_ready(secs(1e9)).unwrap())
    };
    // If these blocked behind wait_ready, the test would never finish.
    while sup.snapshot_value()["g"][0]["state"] != "starting" {}
    drain_all(&sup);
    sup.stop_groups(secs(30.0), true).unwrap();
    // The stop must wake the waiter (its own timeout is 1e9 s).
    assert!(!within(HANG, "the woken wait_ready", move || waiter
        .join()
        .unwrap()));
}

#[test]
fn dropping_the_supervisor_kills_and_reaps_every_worker() {
    let sup = supervisor(&[sh_group("g", 3, STUBBORN)]);
    sup.start_groups(&["g"]).unwrap();
    let pids = pids(&sup.snapshot_value(), "g");
    drop(sup);
    for pid in pids {
        assert_gone(pid);
    }
}

#[test]
fn reconfiguring_does_not_touch_running_workers() {
    let sup = supervisor(&[sh_group("g", 1, POLITE)]);
    sup.start_groups(&["g"]).unwrap();
    // The same entries, but for the figures that change by themselves as a process runs.
    let fixed = |mut snapshot: serde_json::Value| {
        for entry in snapshot["g"].as_array_mut().unwrap() {
            for live in ["uptime_ms", "rss_bytes", "cpu_ms"] {
                entry.as_object_mut().unwrap().remove(live);
            }
        }
        snapshot
    };
    let before = fixed(sup.snapshot_value());
    sup.configure_json(&json!([sh_group("h", 1, POLITE)]).to_string())
        .unwrap();
    assert_eq!(fixed(sup.snapshot_value()), before);
    assert!(matches!(
        sup.start_groups(&["g"]),
        Err(Error::UnknownGroup(_))
    ));
    // Its workers can still be ended by name.
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
    assert!(matches!(
        sup.configure_json("[{\"name\": 1}]"),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn output_to_a_fifo_without_a_reader_is_a_spawn_error_not_a_hang() {
    let dir = scratch_dir("fifo-out");
    let fifo = dir.join("out.fifo");
    mkfifo(&fifo);
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"stdout": {"file": fifo, "append": true}}),
    )]);
    match sup.start_groups(&["g"]) {
        Err(Error::Spawn { source, .. }) => {
            let text = source.to_string();
            assert!(
                text.contains("No such device or address") && text.contains("out.fifo"),
                "{text}"
            );
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_eq!(sup.snapshot_value(), json!({}));
}
