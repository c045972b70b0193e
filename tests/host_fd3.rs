//! A host holding descriptor 3 without O_CLOEXEC (the first descriptor a C program opens): the
//! worker must still get its control socket as descriptor 3, and nothing of the host's. One
//! binary of its own, because it takes over descriptor 3 of the process.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_leaked_descriptor_3_does_not_replace_the_control_socket() {
    // Keep whatever the test harness has at 3, and put a leaked pipe there instead.
    // SAFETY: descriptor juggling on our own descriptors, undone at the end.
    let (saved, pipe) = unsafe {
        let saved = libc::fcntl(3, libc::F_DUPFD_CLOEXEC, 100);
        let mut pipe = [0; 2];
        assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
        assert_eq!(libc::dup2(pipe[0], 3), 3);
        (saved, pipe)
    };
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(
        sup.wait_ready(secs(60.0)).unwrap(),
        "{}",
        sup.snapshot_value()
    );
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert!(
        of_kind(&log, "worker_stopped")
            .iter()
            .all(|e| e["exit_code"] == 0),
        "{log:#?}"
    );
    // SAFETY: restoring descriptor 3 as it was.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
        if saved >= 0 {
            libc::dup2(saved, 3);
            libc::close(saved);
        } else {
            libc::close(3);
        }
    }
}
