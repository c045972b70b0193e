//! The C boundary: every error path, handles, strings and results, called as C would call them.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

fn last_error() -> String {
    // SAFETY: the library returns a valid, NUL-terminated string.
    unsafe { CStr::from_ptr(mpsup_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    // SAFETY: a string the library returned.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    mpsup_string_free(s);
    text
}

fn new() -> mpsup_supervisor {
    let mut sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
    assert_ne!(sup.id, 0);
    sup
}

fn configure(sup: mpsup_supervisor, json: &str) -> mpsup_result {
    let c = CString::new(json).unwrap();
    mpsup_configure_process_groups(sup, c.as_ptr())
}

fn snapshot(sup: mpsup_supervisor) -> serde_json::Value {
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_snapshot_json(sup, &mut out), MPSUP_OK);
    serde_json::from_str(&take(out)).unwrap()
}

fn events(sup: mpsup_supervisor, max: usize) -> Vec<serde_json::Value> {
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_drain_events_json(sup, max, &mut out), MPSUP_OK);
    serde_json::from_str(&take(out)).unwrap()
}

#[test]
fn result_names_cover_every_variant_and_unknown_values() {
    let all = [
        (MPSUP_OK, "MPSUP_OK"),
        (MPSUP_ERR_INVALID_HANDLE, "MPSUP_ERR_INVALID_HANDLE"),
        (MPSUP_ERR_INVALID_ARGUMENT, "MPSUP_ERR_INVALID_ARGUMENT"),
        (MPSUP_ERR_INVALID_CONFIG, "MPSUP_ERR_INVALID_CONFIG"),
        (MPSUP_ERR_UNKNOWN_GROUP, "MPSUP_ERR_UNKNOWN_GROUP"),
        (MPSUP_ERR_SPAWN, "MPSUP_ERR_SPAWN"),
        (MPSUP_ERR_TIMEOUT, "MPSUP_ERR_TIMEOUT"),
        (MPSUP_ERR_OS, "MPSUP_ERR_OS"),
        (MPSUP_ERR_PANIC, "MPSUP_ERR_PANIC"),
        (MPSUP_ERR_NOT_READY, "MPSUP_ERR_NOT_READY"),
        (MPSUP_ERR_UNSUPPORTED, "MPSUP_ERR_UNSUPPORTED"),
    ];
    for (i, (result, name)) in all.iter().enumerate() {
        assert_eq!(*result as u32, i as u32, "numbers are fixed");
        // SAFETY: static strings.
        assert_eq!(
            unsafe { CStr::from_ptr(mpsup_result_name(*result as u32)) }
                .to_str()
                .unwrap(),
            *name
        );
    }
    for unknown in [11, 99, u32::MAX] {
        // SAFETY: static string.
        assert_eq!(
            unsafe { CStr::from_ptr(mpsup_result_name(unknown)) }
                .to_str()
                .unwrap(),
            "MPSUP_ERR_UNKNOWN"
        );
    }
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: static string.
    assert_eq!(
        unsafe { CStr::from_ptr(mpsup_version()) }.to_str().unwrap(),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn zero_made_up_stale_and_double_freed_handles_are_invalid() {
    let mut ready = false;
    for bogus in [0u64, 1, 0xdead_beef_0000_0001, u64::MAX] {
        let sup = mpsup_supervisor { id: bogus };
        assert_eq!(
            mpsup_wait_ready(sup, 1.0, &mut ready),
            MPSUP_ERR_INVALID_HANDLE
        );
        assert!(
            last_error().contains("invalid supervisor handle"),
            "{}",
            last_error()
        );
        assert_eq!(mpsup_supervisor_free(sup), MPSUP_ERR_INVALID_HANDLE);
    }
    let sup = new();
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_ERR_INVALID_HANDLE);
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_snapshot_json(sup, &mut out), MPSUP_ERR_INVALID_HANDLE);
    assert!(out.is_null(), "out-parameters are untouched on failure");
    // A new supervisor may reuse the slot, but never the id.
    let again = new();
    assert_ne!(again.id, sup.id);
    assert_eq!(mpsup_snapshot_json(sup, &mut out), MPSUP_ERR_INVALID_HANDLE);
    assert_eq!(mpsup_supervisor_free(again), MPSUP_OK);
}

#[test]
fn null_arguments_are_invalid_arguments() {
    assert_eq!(
        mpsup_supervisor_new(ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    let sup = new();
    assert_eq!(
        mpsup_configure_process_groups(sup, ptr::null()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("groups_json is NULL"));
    assert_eq!(
        mpsup_start_groups(sup, ptr::null(), 2),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    let names = [ptr::null::<c_char>()];
    assert_eq!(
        mpsup_start_groups(sup, names.as_ptr(), 1),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("names[0] is NULL"));
    assert_eq!(
        mpsup_force_terminate_groups(sup, ptr::null(), 1),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_wait_ready(sup, 1.0, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_snapshot_json(sup, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_drain_events_json(sup, 0, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_event_fd(sup, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    // n == 0 needs no array.
    assert_eq!(mpsup_start_groups(sup, ptr::null(), 0), MPSUP_OK);
    assert_eq!(mpsup_force_terminate_groups(sup, ptr::null(), 0), MPSUP_OK);
    mpsup_string_free(ptr::null_mut());
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn non_utf8_text_is_an_invalid_argument() {
    let sup = new();
    let bad = CString::new(vec![b'g', 0xff, 0xfe]).unwrap();
    let names = [bad.as_ptr()];
    assert_eq!(
        mpsup_start_groups(sup, names.as_ptr(), 1),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("names[0] is not valid UTF-8"));
    assert_eq!(
        mpsup_configure_process_groups(sup, bad.as_ptr()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn bad_config_is_rejected_whole_and_the_old_one_stays() {
    let sup = new();
    assert_eq!(
        configure(sup, r#"[{"name":"g","argv":["/bin/sh","-c","exit 0"]}]"#),
        MPSUP_OK
    );
    assert_eq!(configure(sup, "not json"), MPSUP_ERR_INVALID_CONFIG);
    assert!(last_error().starts_with("groups"), "{}", last_error());
    assert_eq!(
        configure(
            sup,
            r#"[{"name":"h","argv":["/bin/true"]},{"name":"i","argv":"/bin/true"}]"#
        ),
        MPSUP_ERR_INVALID_CONFIG
    );
    assert!(
        last_error().starts_with("groups[1].argv"),
        "{}",
        last_error()
    );
    let h = CString::new("h").unwrap();
    assert_eq!(
        mpsup_start_groups(sup, [h.as_ptr()].as_ptr(), 1),
        MPSUP_ERR_UNKNOWN_GROUP
    );
    assert_eq!(last_error(), "unknown group 'h'");
    let g = CString::new("g").unwrap();
    assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn wait_ready_zero_negative_or_nan_is_false_at_once() {
    // A worker that cannot be ready yet; a wait that did not return at once would take 600 s.
    let sup = new();
    let groups = serde_json::json!([{"name": "g", "warmup_ms": 600_000,
        "argv": ["/bin/sh", "-c", "exec sleep 600"]}]);
    assert_eq!(configure(sup, &groups.to_string()), MPSUP_OK);
    let g = CString::new("g").unwrap();
    assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
    for t in [0.0, -1.0, f64::NAN, -f64::INFINITY] {
        let start = std::time::Instant::now();
        let mut ready = true;
        assert_eq!(mpsup_wait_ready(sup, t, &mut ready), MPSUP_OK);
        assert!(!ready, "wait_ready({t})");
        let took = start.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "wait_ready({t}) took {took:?}"
        );
    }
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn negative_or_nan_graceful_timeout_is_an_invalid_argument() {
    let sup = new();
    assert_eq!(
        mpsup_stop_groups(sup, -1.0, true),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_stop_groups(sup, f64::NAN, true),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_stop_groups(sup, 0.0, true),
        MPSUP_OK,
        "nothing to stop"
    );
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn the_last_error_is_per_thread_and_kept_across_successes() {
    let sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_ERR_INVALID_HANDLE);
    let here = last_error();
    assert!(!here.is_empty());
    let there = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(there, "");
    let ok = new();
    assert_eq!(last_error(), here);
    assert_eq!(mpsup_supervisor_free(ok), MPSUP_OK);
}

#[test]
fn events_drain_in_order_with_a_maximum_and_the_fd_says_when() {
    let sup = new();
    assert_eq!(
        configure(
            sup,
            r#"[{"name":"g","workers":3,"readiness":"notify","argv":["/bin/sh","-c","read -r x <&3"]}]"#
        ),
        MPSUP_OK
    );
    let mut fd = -1;
    assert_eq!(mpsup_event_fd(sup, &mut fd), MPSUP_OK);
    let readable = |fd| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    assert!(!readable(fd));
    let g = CString::new("g").unwrap();
    assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
    assert!(readable(fd));
    let first = events(sup, 2);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["seq"], 1);
    let rest = events(sup, 0);
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["seq"], 3);
    assert_eq!(rest[1]["kind"], "supervisor_start_groups");
    assert!(!readable(fd));
    assert_eq!(snapshot(sup)["g"].as_array().unwrap().len(), 3);
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
}

#[test]
fn free_while_another_thread_waits_finishes_that_call_and_kills_the_workers() {
    let sup = new();
    assert_eq!(
        configure(
            sup,
            r#"[{"name":"g","workers":2,"readiness":"notify","argv":["/bin/sh","-c","read -r x <&3"]}]"#
        ),
        MPSUP_OK
    );
    let g = CString::new("g").unwrap();
    assert_eq!(mpsup_start_groups(sup, [g.as_ptr()].as_ptr(), 1), MPSUP_OK);
    let pids = common::pids(&snapshot(sup), "g");
    let waiter = std::thread::spawn(move || {
        let mut ready = true;
        let rc = mpsup_wait_ready(sup, 1e9, &mut ready);
        (rc, ready)
    });
    // The free may land before or during the waiter's call; both must be safe.
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    let (rc, ready) = waiter.join().unwrap();
    assert!(rc == MPSUP_OK || rc == MPSUP_ERR_INVALID_HANDLE, "{rc:?}");
    assert!(!ready || rc != MPSUP_OK);
    for pid in pids {
        common::assert_gone(pid);
    }
}

#[test]
fn worker_helpers_without_a_channel_say_so() {
    // The test process has no MPSUP_CONTROL_FD.
    assert_eq!(mpsup_worker_notify_ready(), MPSUP_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("MPSUP_CONTROL_FD"));
    let mut stop = true;
    assert_eq!(
        mpsup_worker_wait_stop(0.0, &mut stop, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(stop, "out-parameters untouched on failure");
}
