//! A host that forks (Python's multiprocessing "fork", or any C program between fork and exec):
//! the child's copy of a handle must be refused, and using or freeing it there must not touch
//! the parent's workers. One binary of its own, because it forks the test process.

mod common;

use std::ffi::CString;
use std::ptr;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

#[test]
fn a_forked_child_cannot_use_or_free_the_parents_supervisor() {
    let mut sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
    let config = CString::new(
        r#"[{"name":"g","readiness":"notify","argv":["/bin/sh","-c","echo READY >&3; read -r l <&3"]}]"#,
    )
    .unwrap();
    assert_eq!(
        mpsup_configure_process_groups(sup, config.as_ptr()),
        MPSUP_OK
    );
    let g = CString::new("g").unwrap();
    assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
    let mut ready = false;
    assert_eq!(mpsup_wait_ready(sup, 60.0, &mut ready), MPSUP_OK);
    assert!(ready);

    // SAFETY: fork; the child only makes library calls and leaves with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut out = ptr::null_mut();
        let refused = mpsup_snapshot_json(sup, &mut out) == MPSUP_ERR_INVALID_HANDLE
            && mpsup_force_terminate_groups(sup, [g.as_ptr()].as_ptr(), 1)
                == MPSUP_ERR_INVALID_HANDLE
            && mpsup_supervisor_free(sup) == MPSUP_ERR_INVALID_HANDLE;
        // SAFETY: leaving the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child was not refused"
    );

    // The parent's worker is untouched and still stops gracefully.
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_drain_events_json(sup, 0, &mut out), MPSUP_OK);
    // SAFETY: a string the library returned.
    let events = unsafe { std::ffi::CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    mpsup_string_free(out);
    assert!(
        !events.contains("worker_failed") && !events.contains("worker_stopping"),
        "{events}"
    );
    assert_eq!(mpsup_stop_groups(sup, 30.0, true), MPSUP_OK);
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}
