//! Workers that break the rules: they must never crash, block or fool the supervisor.

mod common;

use common::*;
use mpsupervisor::Error;
use serde_json::json;

#[test]
fn a_worker_that_closes_its_control_fd_at_once_is_stopped_by_signal() {
    let dir = scratch_dir("closefd");
    let fifo = dir.join("closed");
    mkfifo(&fifo);
    let script = format!(
        "exec 3>&-; echo closed > {}; exec sleep 1000000",
        fifo.display()
    );
    let sup = supervisor(&[with(sh_group("g", 1, &script), json!({"warmup_ms": 1}))]);
    sup.start_groups(&["g"]).unwrap();
    // Blocks until the worker has closed its end: synchronisation, not a sleep.
    assert_eq!(read(&fifo), "closed\n");
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["signal"], libc::SIGTERM, "{log:#?}");
}

#[test]
fn a_worker_that_never_reads_its_channel_blocks_nothing() {
    // A 1 MiB bootstrap does not fit in the socket buffer; the rest waits in the outbox.
    let payload = "y".repeat(1 << 20);
    let sup = supervisor(&[with(
        sh_group("g", 1, "echo READY >&3; exec sleep 1000000"),
        json!({"readiness": "notify", "bootstrap": payload}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    assert!(matches!(
        sup.stop_groups(secs(0.1), true),
        Err(Error::Timeout(_))
    ));
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn a_mebibyte_of_garbage_is_survived() {
    // g#1: 1 MiB of short garbage lines (ignored), then the protocol as usual.
    // g#2: 1 MiB without a newline: a protocol error, then it is stopped by its signal.
    let script = r#"trap '' PIPE
if [ "$MPSUP_WORKER_ID" = "g#1" ]; then
  head -c 786432 /dev/urandom | base64 >&3; echo READY >&3
  while read -r l <&3; do case "$l" in STOP*) exit 0;; esac; done
else
  (head -c 1048576 /dev/urandom | tr -d '\n' >&3) 2>/dev/null; exec sleep 1000000
fi"#;
    let sup = supervisor(&[with(
        sh_group("g", 2, script),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_ready") >= 1 && count(l, "worker_protocol_error") == 1
    });
    assert_eq!(of_kind(&log, "worker_ready")[0]["worker_id"], "g#1");
    assert_eq!(
        of_kind(&log, "worker_protocol_error")[0]["worker_id"],
        "g#2"
    );
    sup.stop_groups(secs(30.0), true).unwrap();
    log.extend(drain_all(&sup));
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2);
    let by_id = |id: &str| *stopped.iter().find(|e| e["worker_id"] == id).unwrap();
    assert_eq!(by_id("g#1")["exit_code"], 0, "g#1 stopped on STOP");
    assert_eq!(
        by_id("g#2")["signal"],
        libc::SIGTERM,
        "g#2 stopped by signal"
    );
    assert_eq!(sup.snapshot_value(), json!({}));
}

#[test]
fn a_worker_that_exits_0_before_ready_has_failed() {
    let sup = supervisor(&[with(
        sh_group("g", 1, "exit 0"),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(!sup.wait_ready(secs(60.0)).unwrap());
    let log = drain_all(&sup);
    let failed = of_kind(&log, "worker_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["exit_code"], 0);
    assert_eq!(count(&log, "worker_ready"), 0);
}

#[test]
fn a_missing_executable_is_a_spawn_error_naming_the_worker() {
    let sup = supervisor(&[json!({"name": "g", "argv": ["no-such-program-anywhere"]})]);
    match sup.start_groups(&["g"]) {
        Err(Error::Spawn { context, source }) => {
            assert!(context.contains("g#1"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_eq!(sup.snapshot_value(), json!({}));
}

/// What escapes, documented by a test: a worker cannot leave its process group (it leads it, so
/// `setsid` fails with EPERM), but its children can. Such a child is outside the group kill (not
/// outside its cgroup, where `tree_kill` is `"cgroup"`); the
/// worker itself is always killed by pid.
#[test]
fn a_child_that_calls_setsid_escapes_the_group_kill() {
    let dir = scratch_dir("setsid");
    // The escaping child reports its pid through a FIFO once it is in its own session, so the
    // worker says READY only after the escape happened.
    let script = format!(
        "mkfifo {d}/fifo; setsid sh -c 'echo $$ > {d}/fifo; exec sleep 1000000' & read -r c < {d}/fifo; \
         echo $c > {d}/child; sleep 1000000 & echo $! > {d}/inside; echo READY >&3; wait",
        d = dir.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let escaped: i64 = read(&dir.join("child")).trim().parse().unwrap();
    // Whatever happens below, the process this test lets escape is killed at the end.
    struct Reap(i64);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: plain kill of the process this test let escape.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _reap = Reap(escaped);
    let inside: i64 = read(&dir.join("inside")).trim().parse().unwrap();
    let worker = pids(&sup.snapshot_value(), "g")[0];
    sup.force_terminate_groups(&["g"]).unwrap();
    assert_gone(worker);
    assert_dead(inside);
    let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap();
    let session: i64 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        session, escaped,
        "the escaped child leads a session of its own"
    );
    // Where the worker has a cgroup of its own, the forced stop kills it too (tests/lifeline/tree_kill.rs);
    // elsewhere it escapes the group kill.
    if sup.status_value()["guarantees"]["tree_kill"] == "cgroup" {
        assert_dead(escaped);
    } else {
        assert!(
            matches!(proc_state(escaped), Some(s) if s != 'Z'),
            "it escaped the group kill"
        );
    }
    // SAFETY: cleaning up the process this test let escape.
    unsafe { libc::kill(escaped as i32, libc::SIGKILL) };
}
