//! A C host keeps SIGPIPE at its default action (Rust binaries ignore it, so this test puts it
//! back). A log exporter writing to a pipe without a reader must not kill the host, and a log
//! exporter that never drains must not hang freeing the supervisor. One binary of its own,
//! because it changes a process-wide disposition and descriptor 1.

mod common;

use common::*;
use serde_json::json;

#[test]
fn log_exporters_on_broken_or_stuck_pipes_harm_nothing() {
    // SAFETY: process-wide disposition for this binary's only test.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };

    // stdout is a pipe whose reader is gone.
    // SAFETY: descriptor juggling on our own descriptors, undone below.
    let saved_stdout = unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 100);
        let mut pipe = [0; 2];
        assert_eq!(libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::close(pipe[0]);
        libc::dup2(pipe[1], 1);
        libc::close(pipe[1]);
        saved
    };
    let sup = supervisor(&[with(
        sh_group("g", 5, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.configure_logging_json(&json!({"exporters": [{"kind": "stdout"}]}).to_string())
        .unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    sup.stop_groups(secs(30.0), true).unwrap();
    drop(sup);
    // SAFETY: restoring descriptor 1.
    unsafe {
        libc::dup2(saved_stdout, 1);
        libc::close(saved_stdout);
    }

    // A FIFO whose reader never reads: the writer gets stuck, and freeing must still return.
    let (sup, reader, _dir) = supervisor_with_stuck_log_exporter("stuck-free");
    // Returns although the writer cannot finish.
    drop(sup);
    // SAFETY: closing our reader lets the detached writer fail with EPIPE and end.
    unsafe { libc::close(reader) };
}
