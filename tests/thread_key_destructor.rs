//! Calls made from a pthread key destructor, when the library's thread-locals are already gone
//! (glibc destroys thread-locals before running key destructors): a failing call and
//! `mpsup_last_error_message()` must degrade, never abort the process. One binary of its own: the
//! failure mode is an abort.

use std::ffi::{c_void, CStr};
use std::sync::Mutex;

use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

/// What each destructor saw: (result of a failing call, the last error message).
static SEEN: Mutex<Vec<(mpsup_result, String)>> = Mutex::new(Vec::new());

extern "C" fn destructor(_value: *mut c_void) {
    let result = mpsup_supervisor_free(mpsup_supervisor { id: 0 });
    // SAFETY: never NULL, a NUL-terminated string owned by the library.
    let message = unsafe { CStr::from_ptr(mpsup_last_error_message()) }
        .to_string_lossy()
        .into_owned();
    SEEN.lock().unwrap().push((result, message));
}

fn thread_with_key_destructor(key: libc::pthread_key_t, call_first: bool) {
    std::thread::spawn(move || {
        if call_first {
            // Makes the thread-local exist, so that it is destroyed before the destructor runs.
            assert_eq!(
                mpsup_supervisor_free(mpsup_supervisor { id: 0 }),
                MPSUP_ERR_INVALID_HANDLE
            );
        }
        // SAFETY: a key of ours; a non-NULL value makes the destructor run at thread exit.
        assert_eq!(
            unsafe { libc::pthread_setspecific(key, 1 as *const c_void) },
            0
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_failing_call_from_a_key_destructor_degrades_instead_of_aborting() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key with our destructor.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(destructor)) },
        0
    );
    thread_with_key_destructor(key, true);
    thread_with_key_destructor(key, false);
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (result, message) in &seen {
        assert_eq!(*result, MPSUP_ERR_INVALID_HANDLE);
        assert!(!message.is_empty(), "{seen:?}");
    }
    // The thread whose storage was destroyed gets the static explanation.
    assert!(seen[0].1.contains("unavailable"), "{seen:?}");
    // This thread's storage is untouched and works as ever.
    assert_eq!(
        mpsup_supervisor_free(mpsup_supervisor { id: 0 }),
        MPSUP_ERR_INVALID_HANDLE
    );
    // SAFETY: as above.
    let here = unsafe { CStr::from_ptr(mpsup_last_error_message()) }.to_string_lossy();
    assert!(here.contains("invalid supervisor handle"), "{here}");
}
