//! A host that ignores SIGCHLD makes the kernel reap children by itself. Exits must still be
//! seen, with and without pidfds; the status is lost, so both exit_code and signal are null.
//! One binary of its own, because the disposition is process-wide.

mod common;

use common::*;
use mpsupervisor::{Options, Supervisor};
use serde_json::json;

fn run(use_pidfd: bool) {
    let sup = Supervisor::with_options(Options {
        use_pidfd,
        ..Options::default()
    })
    .unwrap();
    let groups = json!([
        sh_group("quits", 1, "exit 3"),
        with(sh_group("g", 2, POLITE), json!({"readiness": "notify"})),
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    sup.start_groups(&["quits", "g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_failed") == 1 && count(l, "worker_ready") == 2
    });
    let failed = of_kind(&log, "worker_failed")[0];
    assert!(
        failed["exit_code"].is_null() && failed["signal"].is_null(),
        "{failed}"
    );
    assert_eq!(failed["status_unavailable"], true, "{failed}");
    let pids = pids(&sup.snapshot_value(), "g");
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_stopped"), 2);
    for e in of_kind(&log, "worker_stopped") {
        assert_eq!(e["status_unavailable"], true, "{e}");
    }
    assert_eq!(sup.snapshot_value(), json!({}));
    for pid in pids {
        assert_gone(pid);
    }
}

#[test]
fn exits_are_seen_when_the_host_ignores_sigchld() {
    // SAFETY: setting a disposition; this binary's only test.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    run(true);
    run(false);
}
