//! 1,000 start/stop cycles, mixing graceful and forced stops, across ten supervisors: no
//! descriptor, thread, child or memory growth, checked from /proc. One binary of its own, so
//! that nothing else runs in the process while it counts.

mod common;

use common::*;
use mpsupervisor::Supervisor;
use serde_json::json;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn cycles(worker: &std::path::Path, count: usize) {
    let sup = Supervisor::new().unwrap();
    let groups = json!([
        {"name": "chan", "workers": 2, "readiness": "notify", "argv": [worker]},
        {"name": "sig", "workers": 1, "control_channel": "off", "warmup_ms": 1, "argv": ["/bin/sleep", "1000000"]},
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    for i in 0..count {
        sup.start_groups(&["chan", "sig"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        if i % 2 == 0 {
            sup.stop_groups(secs(60.0), i % 4 == 0).unwrap();
        } else {
            sup.force_terminate_groups(&["chan", "sig"]).unwrap();
        }
        let events = sup.drain_events(0).unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e.kind, mpsupervisor::EventKind::WorkerStopped { .. }))
                .count(),
            3
        );
        assert_eq!(children(), Vec::<String>::new(), "cycle {i} left a child");
    }
}

#[test]
fn a_thousand_cycles_leave_nothing_behind() {
    let worker = build_c("tiny_worker", &["bench/tiny_worker.c"], false, &[]);
    // Warm up: allocator arenas, lazily initialised statics, the handle registry.
    cycles(&worker, 50);
    let (fds0, threads0, rss0) = (fds(), threads(), rss_kib());
    for _ in 0..10 {
        cycles(&worker, 100);
    }
    let (fds1, rss1) = (fds(), rss_kib());
    assert_eq!(fds1, fds0, "descriptors leaked");
    // A thread joined at the last free may still be listed for a moment while the kernel ends
    // it (in either count): waited for, bounded.
    let deadline = std::time::Instant::now() + HANG;
    while threads() > threads0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(
        threads() <= threads0,
        "threads leaked: {} > {threads0}",
        threads()
    );
    assert!(
        rss1 <= rss0 + 1024,
        "resident memory grew from {rss0} KiB to {rss1} KiB"
    );
}
