//! mpsup-exec: sets a worker's limits, umask, cgroup and identity, then becomes the worker.
//!
//! `mpsup-exec [OPTION VALUE]... -- PROGRAM ARGV0 ARG...`, spawned by libmpsupervisor in place of
//! a worker. It applies its options in the order given, sets `LISTEN_PID` to its own pid when
//! `MPSUP_EXEC_LISTEN_PID=1` is in its environment (socket activation: the pid is the worker's,
//! exec keeps it), and execs `PROGRAM` with `ARGV0 ARG...` and its environment. Options:
//! - `-r FD`: the report descriptor (first, so that every later failure reaches it). It is made
//!   close-on-exec, so a successful exec closes it and its reader sees end of file; a failure
//!   writes 5 bytes there (a tag: the letter of the option that failed, `E` for the exec; then
//!   the errno as a native-endian i32) and exits 126 (127 for the exec).
//! - `-C DIR`: the worker is born in the cgroup v2 `DIR` instead of moved there (a move waits
//!   for an RCU grace period: milliseconds): `clone3` with `CLONE_INTO_CGROUP | CLONE_PARENT`,
//!   a fork of this tiny process whose child is the library's child, as every worker is. The
//!   shim then writes 5 bytes on the report descriptor (`P`, then the child's pid as a
//!   native-endian i32) and exits 0; the child leads its own process group, as the shim did,
//!   and goes on with the options after this one. Right after `-r`. Where the kernel has no
//!   `clone3` (ENOSYS, or too old for `CLONE_INTO_CGROUP`: EINVAL, E2BIG), it joins `DIR` as
//!   `-c` does and nothing is reported.
//! - `-R NAME:SOFT:HARD`: `setrlimit` (NAME: `nofile`, `core`, `nproc`, `as`, `memlock`,
//!   `stack`, `cpu`, `fsize`; all ones is `RLIM_INFINITY`).
//! - `-m MODE`: `umask` (octal).
//! - `-c DIR`: writes `0` to `DIR/cgroup.procs` (so the worker is in its cgroup before its first
//!   instruction, and every process it ever forks is too); once per hierarchy. Before the
//!   identity options, since joining needs root.
//! - `-G GID,GID,...`: `setgroups` (empty: none).
//! - `-g GID`: `setresgid` (real, effective and saved).
//! - `-u UID`: `setresuid` (after the groups and gid, which need the privilege it drops).
//! - `-n 1`: `PR_SET_NO_NEW_PRIVS`, last.
//!
//! The library writes them in that order; the shim applies them in the order given.
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
            // -C DIR: from here on, a child born in the cgroup DIR.
            b"-C" => born_in(value, report),
            _ => apply_attribute(opt, value.to_str().ok()?, report)?,
        }
        i += 2;
    }
    None
}

/// Applies one process attribute option (`-R`, `-m`, `-G`, `-g`, `-u`, `-n`), or fails with
/// its letter as the tag; None for an option the library does not write.
fn apply_attribute(opt: &[u8], value: &str, report: c_int) -> Option<()> {
    // SAFETY (every block below): plain system calls with valid arguments.
    let ok = match opt {
        b"-R" => {
            let mut parts = value.split(':');
            let resource = resource(parts.next()?)?;
            let soft = parts.next()?.parse().ok()?;
            let hard = parts.next()?.parse().ok()?;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            unsafe { libc::setrlimit(resource, &limit) == 0 }
        }
        b"-m" => {
            let mode = libc::mode_t::from_str_radix(value, 8).ok()?;
            unsafe { libc::umask(mode) };
            true
        }
        b"-G" => {
            let gids: Option<Vec<libc::gid_t>> = value
                .split(',')
                .filter(|g| !g.is_empty())
                .map(|g| g.parse().ok())
                .collect();
            let gids = gids?;
            unsafe { libc::setgroups(gids.len(), gids.as_ptr()) == 0 }
        }
        b"-g" => {
            let gid: libc::gid_t = value.parse().ok()?;
            unsafe { libc::setresgid(gid, gid, gid) == 0 }
        }
        b"-u" => {
            let uid: libc::uid_t = value.parse().ok()?;
            unsafe { libc::setresuid(uid, uid, uid) == 0 }
        }
        b"-n" => unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 },
        _ => return None,
    };
    if !ok {
        fail(report, opt[1], errno(), 126);
    }
    Some(())
}

/// The resource of an `-R` name (as the groups JSON spells it).
fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "nofile" => libc::RLIMIT_NOFILE,
        "core" => libc::RLIMIT_CORE,
        "nproc" => libc::RLIMIT_NPROC,
        "as" => libc::RLIMIT_AS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "stack" => libc::RLIMIT_STACK,
        "cpu" => libc::RLIMIT_CPU,
        "fsize" => libc::RLIMIT_FSIZE,
        _ => return None,
    })
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

// The kernel's clone3 arguments, from the library's one definition of them.
#[path = "../os/clone_args.rs"]
mod clone_args;
use clone_args::{CloneArgs, CLONE_INTO_CGROUP};

/// Forks into the cgroup v2 `dir` (`-C`): returns in the child, which leads its own process
/// group; the shim reports the child's pid and exits. Fails with `C`.
fn born_in(dir: &CStr, report: c_int) {
    // SAFETY: plain system calls with valid arguments; `clone3` without CLONE_VM returns twice
    // like fork, each side on its own copy of this single-threaded process.
    unsafe {
        let cgroup = libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if cgroup < 0 {
            fail(report, b'C', errno(), 126);
        }
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP | libc::CLONE_PARENT as u64,
            cgroup: cgroup as u64,
            ..CloneArgs::default()
        };
        let pid = libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        );
        if pid < 0 {
            let err = errno();
            libc::close(cgroup);
            if matches!(err, libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG) {
                return join_cgroup(dir, report);
            }
            fail(report, b'C', err, 126);
        }
        if pid == 0 {
            libc::close(cgroup);
            // A worker leads its own process group, as posix_spawn made the shim: before the
            // exec, which the library waits for.
            libc::setpgid(0, 0);
            return;
        }
        // The pid, in the report's message format, and the shim leaves.
        fail(report, b'P', pid as c_int, 0)
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
        set_pid_vars();
        libc::execv(*argv.add(options.program), argv.add(options.program + 1));
        fail(report, b'E', errno(), 127)
    }
}

/// `{pid}` in the variables `MPSUP_EXEC_PID_VARS` names becomes this process's pid (the
/// worker's, once it execs); the list itself is removed.
///
/// # Safety
/// Single-threaded, before the exec: nothing else reads or writes the environment.
unsafe fn set_pid_vars() {
    let list_name = c_name(env::EXEC_PID_VARS);
    // SAFETY: a NUL-terminated name; the value is copied before the environment changes.
    let names = unsafe {
        let list = libc::getenv(list_name.as_ptr());
        if list.is_null() {
            return;
        }
        CStr::from_ptr(list).to_bytes().to_vec()
    };
    let pid = unsafe { libc::getpid() }.to_string();
    for name in names.split(|&b| b == b',').filter(|n| !n.is_empty()) {
        let Ok(name) = CString::new(name) else {
            continue;
        };
        // SAFETY: as above.
        unsafe {
            let value = libc::getenv(name.as_ptr());
            if value.is_null() {
                continue;
            }
            let value =
                String::from_utf8_lossy(CStr::from_ptr(value).to_bytes()).replace("{pid}", &pid);
            if let Ok(value) = CString::new(value) {
                libc::setenv(name.as_ptr(), value.as_ptr(), 1);
            }
        }
    }
    // SAFETY: as above.
    unsafe { libc::unsetenv(list_name.as_ptr()) };
}
