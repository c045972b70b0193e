//! mpsup-exec: joins a cgroup, then becomes the worker.
//!
//! `mpsup-exec [OPTION VALUE]... -- PROGRAM ARGV0 ARG...`, spawned by libmpsupervisor in place of
//! a worker. It applies its options in the order given, sets `LISTEN_PID` to its own pid when
//! `MPSUP_EXEC_LISTEN_PID=1` is in its environment (socket activation: the pid is the worker's,
//! exec keeps it), and execs `PROGRAM` with `ARGV0 ARG...` and its environment. Options:
//! - `-r FD`: the report descriptor (first, so that every later failure reaches it). It is made
//!   close-on-exec, so a successful exec closes it and its reader sees end of file; a failure
//!   writes 5 bytes there (a tag: `C` for a cgroup, `E` for the exec; then the errno as a
//!   native-endian i32) and exits 126 (127 for the exec).
//! - `-c DIR`: writes `0` to `DIR/cgroup.procs` (so the worker is in its cgroup before its first
//!   instruction, and every process it ever forks is too); once per hierarchy.
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

/// The options before `--`, as the library writes them (nothing else calls the shim).
struct Options {
    /// Where a failure is reported (-1: nowhere).
    report: c_int,
    /// The index of `PROGRAM` in argv.
    program: usize,
}

/// Reads the options and does what each asks, in order, as it meets them. Returns None on a
/// command line the library does not write.
///
/// # Safety
/// argv holds argc valid C strings.
unsafe fn apply_options(argc: usize, argv: *const *const c_char) -> Option<Options> {
    // SAFETY: i < argc.
    let arg = |i: usize| unsafe { CStr::from_ptr(*argv.add(i)) };
    let mut report = -1;
    let mut i = 1;
    while i < argc {
        let opt = arg(i).to_bytes();
        if opt == b"--" {
            return (i + 2 < argc).then_some(Options {
                report,
                program: i + 1,
            });
        }
        let value = (i + 1 < argc).then(|| arg(i + 1))?;
        match opt {
            // -r FD: the report descriptor, made close-on-exec so that an exec closes it.
            b"-r" => {
                report = value.to_str().ok()?.parse().ok()?;
                // SAFETY: a plain system call.
                unsafe { libc::fcntl(report, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            // -c DIR: joins the cgroup DIR (repeated: one per hierarchy).
            b"-c" => join_cgroup(value, report),
            _ => return None,
        }
        i += 2;
    }
    None
}

/// Writes `0` (this process) to `dir/cgroup.procs`, or fails with `C`.
fn join_cgroup(dir: &CStr, report: c_int) {
    let mut procs = dir.to_bytes().to_vec();
    procs.extend_from_slice(b"/cgroup.procs\0");
    // SAFETY: plain system calls with valid, NUL-terminated buffers.
    unsafe {
        let fd = libc::open(procs.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            fail(report, b'C', errno(), 126);
        }
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(report, b'C', errno(), 126);
        }
        libc::close(fd);
    }
}

#[no_mangle]
/// # Safety
/// Called by the C runtime with the program's arguments.
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let argc = usize::try_from(argc).unwrap_or(0);
    // SAFETY: argv holds argc valid C strings, then NULL (execv takes the tail as is).
    unsafe {
        let Some(options) = apply_options(argc, argv) else {
            return 2;
        };
        let report = options.report;
        let flag_name = c_name(env::EXEC_LISTEN_PID);
        let flag = libc::getenv(flag_name.as_ptr());
        if !flag.is_null() && CStr::from_ptr(flag).to_bytes() == b"1" {
            let pid = format!("{}\0", libc::getpid());
            libc::setenv(c_name(env::LISTEN_PID).as_ptr(), pid.as_ptr().cast(), 1);
            libc::unsetenv(flag_name.as_ptr());
        }
        libc::execv(*argv.add(options.program), argv.add(options.program + 1));
        fail(report, b'E', errno(), 127)
    }
}
