//! `Options { use_pidfd: false }` and `MPSUP_DISABLE_PIDFD=1` really run the fallback: while
//! workers run, this process holds no pidfd at all, and exits are still seen. With the default
//! options (where the kernel allows pidfds) there is one per worker, so the check is not
//! vacuous. One binary of its own: it counts the whole process's descriptors and sets the
//! environment.

mod common;

use common::*;
use mpsupervisor::{Options, Supervisor};

/// How many pidfds this process holds now.
fn pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[pidfd]")
        })
        .count()
}

fn kernel_has_pidfds() -> bool {
    // SAFETY: plain system call; the descriptor is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) } as i32;
    if fd < 0 {
        return false;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    true
}

/// Runs 3 workers; returns how many pidfds were open while they ran, after checking that the
/// exit of one killed from outside is seen.
fn pidfds_while_workers_run(sup: Supervisor) -> usize {
    start_ready(&sup, "g", 3, POLITE);
    let during = pidfds();
    let pid = pids(&sup.snapshot_value(), "g")[0];
    // SAFETY: signalling our own worker.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(of_kind(&log, "worker_failed")[0]["pid"], pid);
    sup.stop_groups(secs(30.0), true).unwrap();
    drop(sup);
    assert_gone(pid);
    during
}

#[test]
fn the_fallback_holds_no_pidfd_and_still_sees_exits() {
    std::env::remove_var("MPSUP_DISABLE_PIDFD");
    assert_eq!(pidfds(), 0);
    if kernel_has_pidfds() {
        assert_eq!(pidfds_while_workers_run(Supervisor::new().unwrap()), 3);
    }
    let forced = Supervisor::with_options(Options {
        use_pidfd: false,
        ..Options::default()
    })
    .unwrap();
    assert_eq!(pidfds_while_workers_run(forced), 0);

    std::env::set_var("MPSUP_DISABLE_PIDFD", "1");
    assert_eq!(pidfds_while_workers_run(Supervisor::new().unwrap()), 0);
    assert_eq!(
        pidfds_while_workers_run(Supervisor::with_options(Options::default()).unwrap()),
        0
    );
    std::env::remove_var("MPSUP_DISABLE_PIDFD");
}
