//! When the socket pair cannot be made (EMFILE), a worker still starts, stops by its signal, and a
//! `stop_event_unavailable` event says why; when even a pidfd cannot be had, its exit is still
//! seen. This binary holds one test because it exhausts the process's descriptor table.

mod common;

use common::*;
use serde_json::json;

#[test]
fn emfile_falls_back_to_signals_and_polling() {
    let sup = supervisor(&[sh_group("g", 2, POLITE)]);
    // A small soft limit keeps the filling quick wherever the default limit is huge.
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out-parameter and input.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(highest + 64);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    // Fill the descriptor table, then free exactly one slot: the first worker's socketpair
    // fails (it needs two) but its pidfd fits; the second worker gets neither.
    let mut filler = Vec::new();
    loop {
        // SAFETY: dup of stdin (or of /dev/null when stdin is closed), closed below.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EMFILE)
            );
            break;
        }
        filler.push(fd);
        assert!(filler.len() < 2_000_000, "no descriptor limit");
    }
    // SAFETY: closing one of our own descriptors.
    unsafe { libc::close(filler.pop().unwrap()) };
    let started = sup.start_groups(&["g"]);
    for fd in filler {
        // SAFETY: closing our own descriptors.
        unsafe { libc::close(fd) };
    }
    started.unwrap();

    let log = drain_all(&sup);
    let unavailable = of_kind(&log, "stop_event_unavailable");
    assert_eq!(unavailable.len(), 2, "{log:#?}");
    for e in &unavailable {
        assert_eq!(e["fallback"], "terminate_fallback");
        assert!(
            e["error"].as_str().unwrap().contains("Too many open files"),
            "{e}"
        );
    }
    let snap = sup.snapshot_value();
    for w in snap["g"].as_array().unwrap() {
        assert_eq!(w["control_channel"], "unavailable");
        assert_eq!(w["stop_strategy"], "terminate_fallback");
    }
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let pids = pids(&snap, "g");
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2);
    for e in stopped {
        assert_eq!(e["mode"], "graceful");
        assert_eq!(e["signal"], libc::SIGTERM);
    }
    assert_eq!(sup.snapshot_value(), json!({}));
    for pid in pids {
        assert_gone(pid);
    }
}
