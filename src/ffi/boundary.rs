//! The machinery every export shares: the result enum, the panic boundary, the thread-local
//! last-error message, and the conversion of C arguments.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// The result of every fallible call. Numbers are fixed forever; retired ones are never reused.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mpsup_result {
    /// Success.
    MPSUP_OK = 0,
    /// The handle is zero, freed, stale or made up.
    MPSUP_ERR_INVALID_HANDLE = 1,
    /// NULL where a value is required, non-UTF-8 text, a bad number.
    MPSUP_ERR_INVALID_ARGUMENT = 2,
    /// The groups JSON was rejected; the old configuration stays in force.
    MPSUP_ERR_INVALID_CONFIG = 3,
    /// A group name that was never configured.
    MPSUP_ERR_UNKNOWN_GROUP = 4,
    /// posix_spawn failed; nothing from that call is left running.
    MPSUP_ERR_SPAWN = 5,
    /// A graceful stop did not finish in time.
    MPSUP_ERR_TIMEOUT = 6,
    /// Another system call failed.
    MPSUP_ERR_OS = 7,
    /// A bug inside the library; it was caught at the boundary.
    MPSUP_ERR_PANIC = 8,
    /// start_work before every named worker is ready.
    MPSUP_ERR_NOT_READY = 9,
    /// What a group asks cannot be had here (privilege, cgroup controller): the message names the
    /// key and why; nothing was started for it.
    MPSUP_ERR_UNSUPPORTED = 10,
}

use mpsup_result::*;

/// Every result with its name, in number order.
pub(crate) const RESULT_NAMES: [(mpsup_result, &CStr); 11] = [
    (MPSUP_OK, c"MPSUP_OK"),
    (MPSUP_ERR_INVALID_HANDLE, c"MPSUP_ERR_INVALID_HANDLE"),
    (MPSUP_ERR_INVALID_ARGUMENT, c"MPSUP_ERR_INVALID_ARGUMENT"),
    (MPSUP_ERR_INVALID_CONFIG, c"MPSUP_ERR_INVALID_CONFIG"),
    (MPSUP_ERR_UNKNOWN_GROUP, c"MPSUP_ERR_UNKNOWN_GROUP"),
    (MPSUP_ERR_SPAWN, c"MPSUP_ERR_SPAWN"),
    (MPSUP_ERR_TIMEOUT, c"MPSUP_ERR_TIMEOUT"),
    (MPSUP_ERR_OS, c"MPSUP_ERR_OS"),
    (MPSUP_ERR_PANIC, c"MPSUP_ERR_PANIC"),
    (MPSUP_ERR_NOT_READY, c"MPSUP_ERR_NOT_READY"),
    (MPSUP_ERR_UNSUPPORTED, c"MPSUP_ERR_UNSUPPORTED"),
];

impl From<&Error> for mpsup_result {
    fn from(e: &Error) -> Self {
        match e {
            Error::InvalidHandle(_) => MPSUP_ERR_INVALID_HANDLE,
            Error::InvalidArgument(_) => MPSUP_ERR_INVALID_ARGUMENT,
            Error::InvalidConfig(_) => MPSUP_ERR_INVALID_CONFIG,
            Error::UnknownGroup(_) => MPSUP_ERR_UNKNOWN_GROUP,
            Error::Spawn { .. } => MPSUP_ERR_SPAWN,
            Error::Timeout(_) => MPSUP_ERR_TIMEOUT,
            Error::Os { .. } => MPSUP_ERR_OS,
            Error::NotReady(_) => MPSUP_ERR_NOT_READY,
            Error::Unsupported(_) => MPSUP_ERR_UNSUPPORTED,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// What `mpsup_last_error_message` gives once this thread's storage is gone: a call made from a
/// thread-local or pthread key destructor, after the library's thread-locals were destroyed.
const UNAVAILABLE: &CStr = c"the error message is unavailable: this call was made while the thread was exiting (from a thread-local or pthread key destructor)";

pub(crate) fn set_last_error(message: &str) {
    let clean = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // Never `with`: it panics once the thread-local is destroyed, and the panic would abort.
    let _ = LAST_ERROR.try_with(|m| {
        if let Ok(mut slot) = m.try_borrow_mut() {
            *slot = clean;
        }
    });
}

/// The message of this thread's last failure; valid until this thread's next failing call.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|m| m.try_borrow().map(|s| s.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(UNAVAILABLE.as_ptr())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error (panic) in mpsupervisor: {what}")
}

/// Runs the body of an export: errors become results with a message, panics become
/// `MPSUP_ERR_PANIC`. Out-parameters are written by the body only on success.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> mpsup_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => MPSUP_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            mpsup_result::from(&e)
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            MPSUP_ERR_PANIC
        }
    }
}

/// Runs the body of an export that returns nothing; a panic is swallowed (and recorded).
pub(crate) fn guard_void(body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        set_last_error(&panic_message(payload.as_ref()));
    }
}

/// Borrows a required C string as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// Borrows an array of `n` C strings as UTF-8.
///
/// # Safety
/// `names` is NULL or points to `n` pointers, each NULL or a NUL-terminated string.
pub(crate) unsafe fn names<'a>(
    names: *const *const c_char,
    n: usize,
) -> Result<Vec<&'a str>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if names.is_null() {
        return Err(Error::InvalidArgument(format!(
            "names is NULL but n is {n}"
        )));
    }
    (0..n)
        .map(|i| text(*names.add(i), &format!("names[{i}]")))
        .collect()
}

/// Hands a string to C; it must come back through `mpsup_string_free`.
pub(crate) fn into_c_string(s: String) -> *mut c_char {
    // JSON text never holds a raw NUL (it would be escaped), so this cannot fail.
    CString::new(s).unwrap_or_default().into_raw()
}

/// Checks that an out-pointer is usable.
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<(), Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    Ok(())
}
