//! Every function called from 8 threads at once on one handle while another thread configures,
//! starts, stops, force-terminates and frees it, over and over. Nothing may crash, hang, leak a
//! child (a worker's, or a probe's: group `b` has an exec probe), or answer anything but success
//! or the documented error.

mod common;

use common::children;

use std::ffi::CString;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

const CONFIG: &str = r#"[{"name":"a","workers":2,"readiness":"notify","argv":["/bin/sh","-c","echo READY >&3; read -r x <&3"]},
                         {"name":"b","workers":1,"control_channel":"off","warmup_ms":1,"argv":["/bin/sh","-c","exec sleep 100000"],
                          "liveness_probe":{"exec":["/bin/true"],"period_ms":10}}]"#;

#[test]
fn calls_from_many_threads_while_another_frees() {
    let current = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let names: Vec<CString> = ["a", "b"]
        .iter()
        .map(|n| CString::new(*n).unwrap())
        .collect();
    let config = CString::new(CONFIG).unwrap();

    let callers: Vec<_> = (0..8)
        .map(|t| {
            let current = current.clone();
            let done = done.clone();
            let names = names.clone();
            let config = config.clone();
            std::thread::spawn(move || {
                let ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let sup = mpsup_supervisor {
                        id: current.load(Ordering::Relaxed),
                    };
                    let rc = match (i + t) % 8 {
                        0 => {
                            let mut out = ptr::null_mut();
                            let rc = mpsup_snapshot_json(sup, &mut out);
                            mpsup_string_free(out);
                            rc
                        }
                        1 => {
                            let mut out = ptr::null_mut();
                            let rc = mpsup_drain_events_json(sup, 3, &mut out);
                            mpsup_string_free(out);
                            rc
                        }
                        2 => mpsup_wait_ready(sup, 0.01, &mut false),
                        3 => mpsup_event_fd(sup, &mut 0),
                        4 => mpsup_configure_process_groups(sup, config.as_ptr()),
                        5 => mpsup_start_groups(sup, ptrs.as_ptr(), 1),
                        6 => mpsup_stop_groups(sup, 0.05, i % 2 == 0),
                        _ => mpsup_force_terminate_groups(sup, ptrs.as_ptr(), 2),
                    };
                    assert!(
                        matches!(
                            rc,
                            MPSUP_OK
                                | MPSUP_ERR_INVALID_HANDLE
                                | MPSUP_ERR_TIMEOUT
                                | MPSUP_ERR_UNKNOWN_GROUP
                        ),
                        "thread {t} call {} gave {rc:?}",
                        (i + t) % 8
                    );
                    i += 1;
                }
            })
        })
        .collect();

    for round in 0..40 {
        let mut sup = mpsup_supervisor { id: 0 };
        assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
        assert_eq!(
            mpsup_configure_process_groups(sup, config.as_ptr()),
            MPSUP_OK
        );
        current.store(sup.id, Ordering::Relaxed);
        let ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        assert_eq!(mpsup_start_groups(sup, ptrs.as_ptr(), 2), MPSUP_OK);
        let mut ready = false;
        assert_eq!(mpsup_wait_ready(sup, 0.05, &mut ready), MPSUP_OK);
        let rc = if round % 2 == 0 {
            mpsup_stop_groups(sup, 0.05, true)
        } else {
            mpsup_force_terminate_groups(sup, ptrs.as_ptr(), 2)
        };
        assert!(matches!(rc, MPSUP_OK | MPSUP_ERR_TIMEOUT), "{rc:?}");
        assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    }
    done.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    // The last handle was freed while callers may still have been inside calls on it; once
    // they are all finished, no worker may be left.
    assert_eq!(children(), Vec::<String>::new());
}
