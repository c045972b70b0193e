//! When `stop_groups` returns, the stopped workers' descriptors (pidfds, control sockets) are
//! closed, not about to be: their reaps and closes run on library threads, and the call waits
//! for them. One binary of its own, because it counts the whole process's descriptors.

mod common;

use common::*;
use serde_json::json;

/// The process's pidfds and sockets: what a worker holds in the host. Not every descriptor:
/// the library's cgroup thread opens cgroup files for a moment after the reaps, while it
/// removes the stopped workers' cgroups.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target.starts_with("socket:") || target == "anon_inode:[pidfd]"
        })
        .count()
}

#[test]
fn stop_returns_with_the_stopped_workers_descriptors_closed() {
    let sup = supervisor(&[with(
        sh_group("g", 20, POLITE),
        json!({"readiness": "notify"}),
    )]);
    let mut counts = Vec::new();
    // The first round also opens what stays for the supervisor's life (the spawner's link).
    for _ in 0..3 {
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        let running = open_descriptors();
        sup.stop_groups(secs(30.0), false).unwrap();
        counts.push((running, open_descriptors()));
    }
    let (running, stopped) = counts[2];
    assert!(
        running >= stopped + 40,
        "{counts:?}: 2 descriptors per running worker"
    );
    assert_eq!(counts[1].1, stopped, "{counts:?}");
    assert_eq!(counts[0].1, stopped, "{counts:?}");
}
