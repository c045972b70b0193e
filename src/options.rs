//! The options of a new supervisor, with their defaults from the host's environment (read when
//! the supervisor is made, on the calling thread).

use crate::events::DEFAULT_CAPACITY;
use crate::protocol::env;
use crate::runtime::spawner::SpawnHook;

/// Options for a new supervisor.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound of the event queue.
    pub event_capacity: usize,
    /// Use pidfds to see exits when the kernel allows. `false` forces the polling fallback
    /// (also forced by the environment variable `MPSUP_DISABLE_PIDFD=1`).
    pub use_pidfd: bool,
    /// The library's own tests only (the `test-hooks` feature, which only its tests turn on):
    /// called with each new pid on the spawner thread before the child is handed over (a panic
    /// there must not leave the child running).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub spawn_hook: Option<SpawnHook>,
    /// At most this many spawner threads; None: one per core, up to 8 (also set by the
    /// environment variable `MPSUP_SPAWN_THREADS`, read when the supervisor is made).
    pub spawn_threads: Option<usize>,
    /// Start the keeper process that kills the workers when the host dies (`MPSUP_DISABLE_KEEPER=1`
    /// turns it off).
    pub keeper: bool,
    /// The keeper program; None: `MPSUP_KEEPER`, else `mpsup-keeper` next to the library.
    pub keeper_path: Option<std::path::PathBuf>,
    /// Put each worker process in a cgroup of its own where cgroup v2 is writable (root, or a
    /// delegated subtree), so that a forced stop kills descendants that left the worker's
    /// process group too; elsewhere (an unprivileged host) workers run without, as with
    /// `false`. On by default where the spawn itself can start a worker inside its cgroup
    /// (x86-64: `clone3` with `CLONE_INTO_CGROUP`), which costs about 1.1× a spawn without
    /// (`bench/respawn.py`). `MPSUP_CGROUP=0` in the environment turns it off, `MPSUP_CGROUP=1`
    /// on everywhere: on other architectures each spawn then goes through the exec shim, which
    /// forks the worker into its cgroup, 2 to 4× the spawn time.
    pub cgroup: bool,
    /// For `bench/` only: workers are moved into their cgroup v2 (a write to `cgroup.procs`)
    /// instead of born there (`MPSUP_CGROUP=move`, which also turns `cgroup` on).
    #[doc(hidden)]
    pub cgroup_by_move: bool,
    /// Run the spawner threads in a descriptor table of their own, where the system allows
    /// (`src/runtime/spawner/table.rs`); `MPSUP_SHARED_FD_TABLE=1` turns it off.
    pub private_fd_table: bool,
}

impl Options {
    /// The spawn hook of the tests, if any.
    pub(crate) fn spawn_hook(&self) -> Option<SpawnHook> {
        #[cfg(feature = "test-hooks")]
        return self.spawn_hook;
        #[cfg(not(feature = "test-hooks"))]
        None
    }
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == value)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_capacity: DEFAULT_CAPACITY,
            use_pidfd: std::env::var_os(env::DISABLE_PIDFD).is_none_or(|v| v != "1"),
            #[cfg(feature = "test-hooks")]
            spawn_hook: None,
            spawn_threads: std::env::var(env::SPAWN_THREADS)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0),
            keeper: !env_is(env::DISABLE_KEEPER, "1"),
            keeper_path: std::env::var_os(env::KEEPER)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from),
            cgroup: match std::env::var(env::CGROUP).as_deref() {
                Ok("0") => false,
                Ok("1" | "move") => true,
                _ => crate::os::born_in::available(),
            },
            cgroup_by_move: env_is(env::CGROUP, "move"),
            private_fd_table: !env_is(env::SHARED_FD_TABLE, "1"),
        }
    }
}
