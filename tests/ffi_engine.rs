//! The engine's C calls at the boundary: status, scale and restart, their error paths, called
//! as C would call them.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::Mutex;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

fn take(s: *mut c_char) -> serde_json::Value {
    assert!(!s.is_null());
    // SAFETY: a string the library returned.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    mpsup_string_free(s);
    serde_json::from_str(&text).unwrap()
}

/// The stale-handle test needs the slot it freed to be the next one taken: no other test of
/// this binary may make a supervisor meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn last_error() -> String {
    // SAFETY: the library returns a valid, NUL-terminated string.
    unsafe { CStr::from_ptr(mpsup_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn status_scale_and_restart_through_the_c_api() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
    let groups = CString::new(
        serde_json::json!([{"name": "g", "workers": 1, "readiness": "notify",
                            "argv": ["/bin/sh", "-c", common::POLITE]}])
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        mpsup_configure_process_groups(sup, groups.as_ptr()),
        MPSUP_OK
    );
    let g = CString::new("g").unwrap();
    let nope = CString::new("nope").unwrap();
    assert_eq!(
        mpsup_scale_group(sup, g.as_ptr(), 2),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("not started"), "{}", last_error());
    assert_eq!(
        mpsup_scale_group(sup, nope.as_ptr(), 2),
        MPSUP_ERR_UNKNOWN_GROUP
    );
    assert_eq!(
        mpsup_scale_group(sup, ptr::null(), 2),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    let names = [g.as_ptr()];
    assert_eq!(mpsup_start_groups(sup, names.as_ptr(), 1), MPSUP_OK);
    assert_eq!(mpsup_scale_group(sup, g.as_ptr(), 2), MPSUP_OK);
    let mut ready = false;
    assert_eq!(mpsup_wait_ready(sup, 60.0, &mut ready), MPSUP_OK);
    assert!(ready);
    let bad = CString::new("{\"max_surge\": -1}").unwrap();
    assert_eq!(
        mpsup_restart_groups(sup, names.as_ptr(), 1, bad.as_ptr()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("options_json"), "{}", last_error());
    assert_eq!(
        mpsup_restart_groups(sup, ptr::null(), 1, ptr::null()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        mpsup_restart_groups(sup, names.as_ptr(), 1, ptr::null()),
        MPSUP_OK
    );
    assert_eq!(mpsup_wait_ready(sup, 60.0, &mut ready), MPSUP_OK);
    assert!(ready);
    assert_eq!(
        mpsup_status_json(sup, ptr::null_mut()),
        MPSUP_ERR_INVALID_ARGUMENT
    );
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_status_json(sup, &mut out), MPSUP_OK);
    let status = take(out);
    assert_eq!(status["groups"]["g"]["generation"], 2);
    assert_eq!(status["groups"]["g"]["target"], 2);
    assert_eq!(mpsup_stop_groups(sup, 30.0, true), MPSUP_OK);
    assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    let mut out = ptr::null_mut();
    assert_eq!(mpsup_status_json(sup, &mut out), MPSUP_ERR_INVALID_HANDLE);
    assert_eq!(
        mpsup_scale_group(sup, g.as_ptr(), 1),
        MPSUP_ERR_INVALID_HANDLE
    );
}

/// A freed handle whose slot a newer supervisor took reaches nothing through any call: the
/// newer one is neither configured, started, stopped nor freed through it.
#[test]
fn a_stale_handle_never_reaches_the_supervisor_that_took_its_slot() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let new = || {
        let mut sup = mpsup_supervisor { id: 0 };
        assert_eq!(mpsup_supervisor_new(&mut sup), MPSUP_OK);
        sup
    };
    let (first, middle, last) = (new(), new(), new());
    assert_eq!(mpsup_supervisor_free(middle), MPSUP_OK);
    let taker = new();
    // The slot is reused (the low half of the id), the id never is.
    assert_eq!(taker.id & 0xffff_ffff, middle.id & 0xffff_ffff);
    assert_ne!(taker.id, middle.id);
    let groups =
        CString::new(r#"[{"name":"g","argv":["/bin/sleep","1000"],"warmup_ms":1}]"#).unwrap();
    let name = CString::new("g").unwrap();
    let names = [name.as_ptr()];
    let mut out = ptr::null_mut();
    let mut ready = false;
    let stale = [
        mpsup_configure_process_groups(middle, groups.as_ptr()),
        mpsup_start_groups(middle, names.as_ptr(), 1),
        mpsup_wait_ready(middle, 0.0, &mut ready),
        mpsup_stop_groups(middle, 1.0, false),
        mpsup_status_json(middle, &mut out),
        mpsup_supervisor_free(middle),
    ];
    assert!(
        stale.iter().all(|r| *r == MPSUP_ERR_INVALID_HANDLE),
        "{stale:?}: {}",
        last_error()
    );
    assert!(out.is_null());
    // The taker is as new: nothing configured, and still there to be freed.
    assert_eq!(mpsup_status_json(taker, &mut out), MPSUP_OK);
    let status = take(out);
    assert_eq!(status["groups"], serde_json::json!({}), "{status}");
    for sup in [first, taker, last] {
        assert_eq!(mpsup_supervisor_free(sup), MPSUP_OK);
    }
}
