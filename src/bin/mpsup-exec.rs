//! mpsup-exec: joins a cgroup, then becomes the worker.
//!
//! `mpsup-exec REPORT_FD|- CGROUP_DIR|- PROGRAM ARGV0 ARG...`, spawned by libmpsupervisor in place of
//! a worker: it writes `0` to `CGROUP_DIR/cgroup.procs` (so the worker is in its cgroup before its
//! first instruction, and every process it ever forks is too), sets `LISTEN_PID` to its own pid
//! when `MPSUP_EXEC_LISTEN_PID=1` is in its environment (socket activation: the pid is the
//! worker's, exec keeps it), and execs `PROGRAM` with `ARGV0 ARG...` and its environment.
//! `REPORT_FD` is made close-on-exec, so a successful exec closes it and its reader sees end of
//! file; a failure writes 5 bytes there (`C` for the cgroup or `E` for the exec, then the errno as
//! a native-endian i32) and exits 126 or 127.
//!
//! No Rust runtime (`no_main`): nothing is changed before the exec (std would ignore SIGPIPE,
//! which exec keeps, and would reopen closed standard descriptors).
#![no_main]

use std::ffi::{c_char, c_int, CStr, CString};

// The variable names the library sets, from the one list of them.
#[allow(dead_code)]
#[path = "../protocol.rs"]
mod protocol;
use protocol::env;

/// A variable name as a C string (the names hold no NUL).
fn c_name(name: &str) -> CString {
    CString::new(name).unwrap_or_default()
}

fn errno() -> c_int {
    // SAFETY: reading this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Writes the failure to the report descriptor and leaves.
fn fail(report: c_int, tag: u8, err: c_int, code: c_int) -> ! {
    let mut msg = [0u8; 5];
    msg[0] = tag;
    msg[1..].copy_from_slice(&err.to_ne_bytes());
    // SAFETY: plain system calls with a valid buffer.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

#[no_mangle]
/// # Safety
/// Called by the C runtime with the program's arguments.
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    if argc < 5 {
        return 2;
    }
    // SAFETY: argv holds argc valid C strings, then NULL (execv takes the tail as is).
    unsafe {
        let arg = |i: usize| CStr::from_ptr(*argv.add(i));
        // "-": no report descriptor (the library had none to spare).
        let report: c_int = match arg(1).to_str() {
            Ok("-") => -1,
            Ok(s) => match s.parse() {
                Ok(fd) => fd,
                Err(_) => return 2,
            },
            Err(_) => return 2,
        };
        // "-": no cgroup to join (only LISTEN_PID wanted).
        if arg(2).to_bytes() != b"-" {
            let mut procs = arg(2).to_bytes().to_vec();
            procs.extend_from_slice(b"/cgroup.procs\0");
            let fd = libc::open(procs.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                fail(report, b'C', errno(), 126);
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            if written != 1 {
                fail(report, b'C', errno(), 126);
            }
            libc::close(fd);
        }
        let flag_name = c_name(env::EXEC_LISTEN_PID);
        let flag = libc::getenv(flag_name.as_ptr());
        if !flag.is_null() && CStr::from_ptr(flag).to_bytes() == b"1" {
            let pid = format!("{}\0", libc::getpid());
            libc::setenv(c_name(env::LISTEN_PID).as_ptr(), pid.as_ptr().cast(), 1);
            libc::unsetenv(flag_name.as_ptr());
        }
        if report >= 0 {
            libc::fcntl(report, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        libc::execv(*argv.add(3), argv.add(4));
        fail(report, b'E', errno(), 127)
    }
}
