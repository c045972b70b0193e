//! How workers start: readiness, spawn errors, what they inherit, and what the host sees.

use super::*;

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
