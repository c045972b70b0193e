//! The engine's C calls at the boundary: status, scale and restart, their error paths, called
//! as C would call them.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

fn take(s: *mut c_char) -> serde_json::Value {
    assert!(!s.is_null());
    // SAFETY: a string the library returned.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    mpsup_string_free(s);
    serde_json::from_str(&text).unwrap()
}

fn last_error() -> String {
    // SAFETY: the library returns a valid, NUL-terminated string.
    unsafe { CStr::from_ptr(mpsup_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn status_scale_and_restart_through_the_c_api() {
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
