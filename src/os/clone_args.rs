//! The kernel's `struct clone_args` for `clone3`, shared by the library (`os::born_in`) and the
//! exec shim (`src/bin/mpsup-exec.rs`, which includes this file by path).

/// `CLONE_INTO_CGROUP` (Linux 5.7), which libc defines for some targets only.
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (its second version, 88 bytes).
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    /// The signal the parent gets at the child's exit (0: none, or with `CLONE_PARENT` the
    /// caller's own exit signal).
    pub exit_signal: u64,
    /// The lowest address of the child's stack (0: the caller's, as fork).
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    /// A descriptor of the cgroup v2 to start the child in (`CLONE_INTO_CGROUP`).
    pub cgroup: u64,
}
