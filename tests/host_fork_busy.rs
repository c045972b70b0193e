//! A host that forks while its other threads are inside library calls (taking the registry
//! lock, failing and setting their last error, logging events): every child must get
//! `MPSUP_ERR_INVALID_HANDLE` for the parent's handle at once, never hang on a lock another
//! thread held at the fork, and may make a supervisor of its own. One binary of its own, because
//! it forks the test process.

mod common;
mod hosts;

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

use hosts::*;

const FORKS: usize = 200;

/// What a forked child does; its exit code says what went wrong (0: all as promised).
fn in_the_child(sup: mpsup_supervisor) -> i32 {
    let mut out = ptr::null_mut();
    if mpsup_snapshot_json(sup, &mut out) != MPSUP_ERR_INVALID_HANDLE {
        return 1;
    }
    // SAFETY: never NULL.
    let message = unsafe { CStr::from_ptr(mpsup_last_error_message()) };
    if !message.to_string_lossy().contains("forked child") {
        return 2;
    }
    if mpsup_supervisor_free(sup) != MPSUP_ERR_INVALID_HANDLE {
        return 3;
    }
    // A supervisor of its own works, with an id that is not the parent's.
    let mut own = mpsup_supervisor { id: 0 };
    if mpsup_supervisor_new(&mut own) != MPSUP_OK || own.id == sup.id {
        return 4;
    }
    if mpsup_supervisor_free(own) != MPSUP_OK {
        return 5;
    }
    0
}

#[test]
fn forking_while_other_threads_are_inside_calls_never_hangs_the_child() {
    let dir = Scratch::new("fork-busy");
    let mut sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
    let settings = CString::new(
        serde_json::json!({"exporters": [{"kind": "jsonl", "settings": {"path": dir.join("log.jsonl")}}]})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        mpsup_configure_lifecycle_logging(sup, settings.as_ptr()),
        MPSUP_OK
    );
    let config = CString::new(
        r#"[{"name":"g","workers":2,"readiness":"notify","argv":["/bin/sh","-c","echo READY >&3; read -r l <&3"]}]"#,
    )
    .unwrap();
    assert_eq!(
        mpsup_configure_process_groups(sup, config.as_ptr()),
        MPSUP_OK
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    for kind in 0..4 {
        let stop = Arc::clone(&stop);
        let config = config.clone();
        busy.push(std::thread::spawn(move || {
            let g = CString::new("g").unwrap();
            while !stop.load(Ordering::Relaxed) {
                match kind {
                    0 => {
                        let mut out = ptr::null_mut();
                        assert_eq!(mpsup_snapshot_json(sup, &mut out), MPSUP_OK);
                        mpsup_string_free(out);
                        assert_eq!(mpsup_drain_events_json(sup, 0, &mut out), MPSUP_OK);
                        mpsup_string_free(out);
                    }
                    1 => {
                        // Failing calls: each sets this thread's last error.
                        assert_eq!(
                            mpsup_supervisor_free(mpsup_supervisor { id: 12345 }),
                            MPSUP_ERR_INVALID_HANDLE
                        );
                        assert_eq!(
                            mpsup_configure_process_groups(sup, c"[] x".as_ptr()),
                            MPSUP_ERR_INVALID_CONFIG
                        );
                    }
                    2 => {
                        assert_eq!(
                            mpsup_configure_process_groups(sup, config.as_ptr()),
                            MPSUP_OK
                        );
                    }
                    _ => {
                        // Workers come and go, so the logger has records to write.
                        assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
                        let mut ready = false;
                        assert_eq!(mpsup_wait_ready(sup, 60.0, &mut ready), MPSUP_OK);
                        assert_eq!(mpsup_stop_groups(sup, 30.0, true), MPSUP_OK);
                    }
                }
            }
        }));
    }

    let mut failures = Vec::new();
    for i in 0..FORKS {
        // SAFETY: fork; the child makes library calls only and leaves with _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let code = in_the_child(sup);
            // SAFETY: leaving the child without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        assert!(child > 0, "fork: {}", std::io::Error::last_os_error());
        let exited = wait_fd_or_exit(child, Duration::from_secs(20));
        if !exited {
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        if !exited {
            failures.push(format!("fork {i}: the child hung"));
            break;
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failures.push(format!("fork {i}: the child ended with status {status:#x}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    assert!(failures.is_empty(), "{failures:#?}");
}
