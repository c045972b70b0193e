//! The spawner threads' descriptor table (`src/runtime/spawner/table.rs`): where the kernel lets a
//! thread unshare its table, they hold a handful of descriptors whatever the number of workers
//! (each spawn copies their table), and a descriptor the host leaks without close-on-exec after
//! the first start reaches no worker; with the private table turned off (the fallback) they share
//! the host's, and the leak still reaches no worker. One test in this binary: it tells the
//! spawner threads apart from the host's by name, so no other supervisor may run meanwhile.

mod common;

use std::path::Path;

use common::*;
use mpsupervisor::{Options, Supervisor};
use serde_json::{json, Value};

fn count_fds(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The descriptor counts of the tables of this process's threads named `mpsup-spawner`.
fn spawner_tables() -> Vec<usize> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "mpsup-spawner")
        })
        .map(|task| count_fds(&task.path().join("fd")))
        .collect()
}

fn supervisor_with(private: bool, groups: &[Value]) -> Supervisor {
    let sup = Supervisor::with_options(Options {
        private_fd_table: private,
        ..Options::default()
    })
    .unwrap();
    sup.configure_json(&Value::Array(groups.to_vec()).to_string())
        .unwrap();
    sup
}

/// The descriptors a `report` worker listed, sorted.
fn reported_fds(path: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = read(path)
        .lines()
        .filter_map(|l| l.strip_prefix("fd ")?.parse().ok())
        .collect();
    v.sort();
    v
}

fn check(private: bool, unshare_allowed: bool) {
    let dir = scratch_dir("fd-table");
    let report = build_c("report", &["tests/programs/report.c"], false, &[]);
    let sup = supervisor_with(
        private,
        &[
            sh_group("many", 100, POLITE),
            json!({"name": "late", "argv": [report], "readiness": "notify",
                   "stdout": {"file": dir.join("late"), "append": false}}),
        ],
    );
    sup.start_groups(&["many"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    // Leaked after the spawner threads started.
    let mut leak = [0; 2];
    // SAFETY: plain pipe(2) into a valid array; closed below.
    assert_eq!(unsafe { libc::pipe(leak.as_mut_ptr()) }, 0);
    sup.start_groups(&["late"]).unwrap();
    let ready = sup.wait_ready(secs(60.0));
    let host = count_fds(Path::new("/proc/self/fd"));
    let tables = spawner_tables();
    // SAFETY: closing our own pipe.
    unsafe {
        libc::close(leak[0]);
        libc::close(leak[1]);
    }
    assert!(ready.unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    drop(sup);
    assert_eq!(reported_fds(&dir.join("late")), [0, 1, 2, 3]);
    assert!(host > 200, "the host holds {host} descriptors");
    assert!(!tables.is_empty(), "no spawner thread found");
    if private && unshare_allowed {
        assert!(
            tables.iter().all(|&n| n < 16),
            "spawner tables {tables:?}, the host's {host}"
        );
    } else {
        assert!(
            tables.iter().all(|&n| n > 200),
            "spawner tables {tables:?}, the host's {host}"
        );
    }
}

#[test]
fn spawner_threads_hold_a_small_table_of_their_own_and_no_leak_reaches_a_worker() {
    // SAFETY: unshare in a thread that only ends afterwards.
    let unshare_allowed = std::thread::spawn(|| unsafe { libc::unshare(libc::CLONE_FILES) } == 0)
        .join()
        .unwrap();
    check(true, unshare_allowed);
    check(false, unshare_allowed);
}
