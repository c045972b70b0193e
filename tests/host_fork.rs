//! A host that forks (Python's multiprocessing "fork", or any C program between fork and exec):
//! the child's copy of a handle must be refused, and using or freeing it there must not touch
//! the parent's workers. One binary of its own, because it forks the test process.

mod common;

use common::secs;

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

/// A forked child that holds copies of every descriptor of its parent until released; dropping
/// this releases it and reaps it, so a failing test leaves nothing behind.
struct Holder {
    pid: libc::pid_t,
    release: i32,
}

impl Holder {
    fn fork() -> Holder {
        let mut fds = [0; 2];
        // SAFETY: a plain pipe2 into a local array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fork; the child makes only async-signal-safe calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut byte = 0u8;
            // SAFETY: plain close and read of our own descriptors.
            unsafe {
                libc::close(fds[1]);
                // Returns at end of file: when the parent drops its Holder (or dies).
                libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        // SAFETY: closing the read end, which only the child uses.
        unsafe { libc::close(fds[0]) };
        Holder {
            pid,
            release: fds[1],
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: closing our end of the pipe ends the child's read; then we reap our child.
        unsafe {
            libc::close(self.release);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

fn process_cpu() -> std::time::Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    std::time::Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Workers that exit and are reaped while a child the host forked still holds copies of their
/// pidfds and control sockets: the epoll set keeps an entry while any copy lives, so an entry
/// that kept reporting its (readable) descriptor would make the monitor spin.
#[test]
fn descriptors_a_forked_child_still_holds_never_make_the_monitor_spin() {
    let sup = common::supervisor(&[common::sh_group("g", 3, common::POLITE)]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let holder = Holder::fork();
    sup.stop_groups(secs(30.0), false).unwrap();

    // A measuring window, not a wait for anything: an idle monitor uses next to no CPU in it,
    // a spinning one all of it.
    let window = std::time::Duration::from_millis(500);
    let before = process_cpu();
    std::thread::sleep(window);
    let used = process_cpu() - before;
    drop(holder);
    assert!(
        used < window / 4,
        "the supervisor used {used:?} of CPU in {window:?} with no worker left"
    );
}
