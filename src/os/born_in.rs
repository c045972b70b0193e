//! Starting one process born in a cgroup v2: `clone3` with `CLONE_INTO_CGROUP`, the way glibc
//! 2.41's `posix_spawnattr_setcgroup_np` does, for the glibc versions before it.
//!
//! Born there, the process never migrates: a migration waits for an RCU grace period
//! (milliseconds), and going through the exec shim to be born there costs a second exec and
//! a second process. Like glibc's `posix_spawn`, the child shares the spawning thread's memory
//! and runs on a stack of its own while that thread waits (`CLONE_VM | CLONE_VFORK`): no page
//! tables are copied, however large the host. So the child only makes system calls, on data
//! prepared before the clone, until its exec: every signal to its default and an empty mask, a
//! process group of its own, its descriptors (`spawn::Layout`), its working directory. A
//! failure's errno is left in the memory it shares with the spawning thread, and it exits 127.
//!
//! x86-64 only: the clone takes a few lines of assembly, because the child must start on its
//! own stack instead of returning into the spawning thread's frames. Elsewhere, and where the
//! kernel refuses `clone3` (older than 5.7, or a seccomp filter), `available` says no and the
//! exec shim places the worker instead.

use std::ffi::{c_char, c_void, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::clone_args::{CloneArgs, CLONE_INTO_CGROUP};
use super::spawn::{spawn_error, Command, FdStep, Layout, SpawnAttributes};

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
/// The child's stack: its frames are a few small functions making system calls.
const STACK_SIZE: usize = 64 * 1024;

/// Set once the kernel has refused `clone3` with `CLONE_INTO_CGROUP`: the shim from then on.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether a process can be born in a cgroup here without the exec shim.
pub fn available() -> bool {
    cfg!(target_arch = "x86_64") && !REFUSED.load(Ordering::Relaxed)
}

/// The step of the child that failed (its errno goes with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    None = 0,
    ProcessGroup,
    Descriptors,
    Cwd,
    Exec,
}

/// What the child reads (nothing it owns: it must not allocate or free) and where it leaves
/// its failure.
struct ChildPlan<'a> {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    steps: &'a [FdStep],
    close_from: Option<RawFd>,
    /// The descriptor limit, for closing from `close_from` one by one.
    open_max: RawFd,
    cwd: Option<*const c_char>,
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

/// A NULL-terminated array of pointers to `strings`, which must outlive it.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Spawns `cmd` born in the cgroup v2 whose directory `cgroup` is open, with the descriptors of
/// `cmd.fds`, and returns its pid. None: the kernel refused `clone3` here (and `available` says
/// no from now on): place the process another way.
pub fn spawn_into(
    cmd: &Command<'_>,
    attrs: &SpawnAttributes,
    cgroup: &OwnedFd,
) -> io::Result<Option<i32>> {
    let layout = Layout::new(&cmd.fds, attrs)?;
    let argv = pointers(cmd.argv);
    let envp = pointers(cmd.envp);
    let plan = ChildPlan {
        program: cmd.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        steps: &layout.steps,
        close_from: layout.close_from,
        open_max: super::open_max(),
        cwd: cmd.cwd.map(CStr::as_ptr),
        failed_step: AtomicI32::new(Step::None as i32),
        failed_errno: AtomicI32::new(0),
    };
    let Some(pid) = clone_child(&plan, cgroup.as_raw_fd())? else {
        return Ok(None);
    };
    let step = plan.failed_step.load(Ordering::Acquire);
    if step == Step::None as i32 {
        return Ok(Some(pid));
    }
    // The child has exited (the spawning thread waited for it): reaped here, as posix_spawn
    // does with a child that could not exec.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let err = io::Error::from_raw_os_error(plan.failed_errno.load(Ordering::Acquire));
    Err(match step {
        s if s == Step::ProcessGroup as i32 => {
            io::Error::new(err.kind(), format!("setpgid: {err}"))
        }
        s if s == Step::Descriptors as i32 => {
            io::Error::new(err.kind(), format!("the child's descriptors: {err}"))
        }
        s if s == Step::Cwd as i32 => io::Error::new(err.kind(), format!("chdir: {err}")),
        _ => spawn_error(cmd.program, err),
    })
}

/// The clone, with every signal blocked in the spawning thread meanwhile (no handler of the
/// host may run in a child that shares its memory); returns the child's pid once it has
/// exec'd or exited, None when the kernel refuses `clone3` into a cgroup.
fn clone_child(plan: &ChildPlan<'_>, cgroup: RawFd) -> io::Result<Option<i32>> {
    let mut stack: Vec<u128> = Vec::with_capacity(STACK_SIZE / 16);
    let args = CloneArgs {
        flags: CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        stack_size: (stack.capacity() * 16) as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    let all = [u64::MAX];
    let mut old = [0u64];
    // SAFETY: rt_sigprocmask with valid 8-byte sets; the clone's child runs `child_main` on
    // `stack` (alive until the clone returns: the parent waits for the child's exec or exit)
    // with `plan`, which outlives it the same way.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            all.as_ptr(),
            old.as_mut_ptr(),
            8,
        );
        let ret = clone3(&args, child_main, plan as *const ChildPlan as *mut c_void);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            old.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8,
        );
        ret
    };
    if ret >= 0 {
        return Ok(Some(ret as i32));
    }
    let errno = (-ret) as i32;
    // ENOSYS: no clone3 (before 5.3, or a seccomp filter, as EPERM: with these flags nothing
    // else answers EPERM; a cgroup's own permissions give EACCES); EINVAL, E2BIG: no
    // CLONE_INTO_CGROUP (before 5.7).
    if matches!(
        errno,
        libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG
    ) {
        REFUSED.store(true, Ordering::Relaxed);
        return Ok(None);
    }
    Err(io::Error::from_raw_os_error(errno))
}

/// `clone3(args)`; the child calls `child(arg)` on the stack of `args`, which never returns.
/// Returns the pid, or minus the errno.
///
/// # Safety
/// `args` has `CLONE_VM` and a stack that stays valid until the child execs or exits
/// (`CLONE_VFORK`); `child` makes only system calls on data that `arg` points to.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3(
    args: &CloneArgs,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> i64 {
    let ret: i64;
    // The child gets rax = 0 and rsp = the top of its stack (16-byte aligned, so the call
    // below leaves the callee the alignment the ABI promises); every other register is the
    // parent's, r12 and r13 among them.
    // SAFETY: the caller's promises; the parent returns with only rax, rcx and r11 changed.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") child,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3(_: &CloneArgs, _: extern "C" fn(*mut c_void) -> !, _: *mut c_void) -> i64 {
    -(libc::ENOSYS as i64)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child: the steps of `plan` (a `ChildPlan`), then the exec; on a failure, its step and
/// errno are left in the plan and the child exits 127.
extern "C" fn child_main(plan: *mut c_void) -> ! {
    // SAFETY: `clone_child` passes its plan, alive while the parent waits.
    let plan = unsafe { &*(plan as *const ChildPlan<'_>) };
    // SAFETY: system calls on the plan's data, which the parent prepared and does not touch.
    let (step, err) = unsafe { run_child(plan) };
    plan.failed_errno.store(err, Ordering::Release);
    plan.failed_step.store(step as i32, Ordering::Release);
    // SAFETY: leaving the child without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

/// # Safety
/// Only in the child of `clone_child`.
unsafe fn run_child(plan: &ChildPlan<'_>) -> (Step, i32) {
    // SAFETY (every call below): plain system calls with valid arguments.
    unsafe {
        default_signals();
        if libc::setpgid(0, 0) != 0 {
            return (Step::ProcessGroup, errno());
        }
        for step in plan.steps {
            let ok = match *step {
                // As glibc: the number is free whatever close says.
                FdStep::Close(fd) => {
                    libc::close(fd);
                    true
                }
                FdStep::Dup2 { from, to } => libc::dup2(from, to) == to,
                FdStep::DevNull(fd) => {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    null == fd
                        || (null >= 0 && libc::dup2(null, fd) == fd && libc::close(null) == 0)
                }
            };
            if !ok {
                return (Step::Descriptors, errno());
            }
        }
        if let Some(first) = plan.close_from {
            // Where close_range is refused (a seccomp filter), one by one, as glibc's fallback.
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) != 0 {
                for fd in first..plan.open_max {
                    libc::close(fd);
                }
            }
        }
        if let Some(cwd) = plan.cwd {
            if libc::chdir(cwd) != 0 {
                return (Step::Cwd, errno());
            }
        }
        let none = [0u64];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            none.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8,
        );
        libc::execve(plan.program, plan.argv, plan.envp);
        (Step::Exec, errno())
    }
}

/// The kernel's `struct sigaction` (glibc's differs: its mask is 128 bytes).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every signal to its default disposition, glibc's own (32, 33) too, as posix_spawn does for
/// the set the library gives it: nothing of the host's handlers or ignored signals survives the
/// exec.
///
/// # Safety
/// Only in the child of `clone_child` (it has handlers of its own: no `CLONE_SIGHAND`).
unsafe fn default_signals() {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction with a valid kernel sigaction and set size.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8,
                )
            };
        }
    }
}
