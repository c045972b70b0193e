//! The worker helpers with an `MPSUP_CONTROL_FD` that names no socket (a closed descriptor, a
//! regular file, a directory, `/dev/null`, a pipe): every helper gives
//! `MPSUP_ERR_INVALID_ARGUMENT` with a message naming the descriptor and what it is, and never
//! reports a stop, a start or a bootstrap it did not get. One binary of its own, because the
//! helpers read the process-wide environment.

mod common;
mod hosts;

use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr;

use hosts::*;
use mpsupervisor::ffi::mpsup_result::*;
use mpsupervisor::ffi::*;

fn last_error() -> String {
    // SAFETY: never NULL.
    unsafe { CStr::from_ptr(mpsup_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Every helper on descriptor `fd`, which is `what`.
fn every_helper_refuses(fd: i32, what: &str) {
    std::env::set_var("MPSUP_CONTROL_FD", fd.to_string());
    let check = |name: &str, result: mpsup_result| {
        assert_eq!(result, MPSUP_ERR_INVALID_ARGUMENT, "{name} on {what}");
        let message = last_error();
        assert!(
            message.contains(&format!("MPSUP_CONTROL_FD {fd} ")) && message.contains(what),
            "{name} on {what}: {message}"
        );
    };
    let (mut stop, mut drain) = (false, false);
    check(
        "wait_stop",
        mpsup_worker_wait_stop(5.0, &mut stop, &mut drain),
    );
    assert!(!stop && !drain, "a stop was reported on {what}");
    let mut started = false;
    check("wait_start", mpsup_worker_wait_start(5.0, &mut started));
    assert!(!started);
    let mut json = ptr::null_mut();
    check(
        "bootstrap_json",
        mpsup_worker_bootstrap_json(5.0, &mut json),
    );
    assert!(json.is_null());
    check("notify_ready", mpsup_worker_notify_ready());
    check("heartbeat", mpsup_worker_heartbeat());
}

#[test]
fn helpers_refuse_descriptors_that_are_not_sockets() {
    let dir = Scratch::new("bad-control-fd");
    let file = std::fs::File::create(dir.join("plain")).unwrap();
    every_helper_refuses(file.as_raw_fd(), "a regular file");
    let directory = std::fs::File::open(dir.path()).unwrap();
    every_helper_refuses(directory.as_raw_fd(), "a directory");
    let null = std::fs::File::open("/dev/null").unwrap();
    every_helper_refuses(null.as_raw_fd(), "a character device");
    let mut pipe = [0; 2];
    // SAFETY: a pipe of our own, closed below.
    assert_eq!(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    every_helper_refuses(pipe[0], "a pipe or FIFO");
    // SAFETY: closing our own pipe; its read end's number is then a closed descriptor (nothing
    // else in this binary opens descriptors meanwhile).
    unsafe {
        libc::close(pipe[1]);
        libc::close(pipe[0]);
    }
    every_helper_refuses(pipe[0], "not an open descriptor");

    // A real channel still works: nothing pending, then a stop.
    let (mut supervisor, worker) = UnixStream::pair().unwrap();
    std::env::set_var("MPSUP_CONTROL_FD", worker.as_raw_fd().to_string());
    let (mut stop, mut drain) = (true, true);
    assert_eq!(mpsup_worker_wait_stop(0.0, &mut stop, &mut drain), MPSUP_OK);
    assert!(!stop && !drain);
    std::io::Write::write_all(&mut supervisor, b"STOP NOW\n").unwrap();
    assert_eq!(
        mpsup_worker_wait_stop(60.0, &mut stop, &mut drain),
        MPSUP_OK
    );
    assert!(stop && !drain);
}
