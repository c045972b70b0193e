//! The words of the control protocol and the names of the environment variables a worker gets:
//! one place, so the supervisor, the worker's helpers (`worker_side.rs`) and the exec shim
//! (`src/bin/mpsup-exec.rs`, which includes this file) cannot drift apart. Plain constants with
//! no dependency, so that a binary can include the file by path.

/// Lines a worker sends on its control channel (each ends in `\n` on the wire).
pub mod from_worker {
    /// The worker is ready (readiness `"notify"`).
    pub const READY: &[u8] = b"READY";
    /// The worker is alive (`heartbeat_timeout_ms`).
    pub const HEARTBEAT: &[u8] = b"HEARTBEAT";
}

/// Lines the supervisor sends on a worker's control channel (each ends in `\n` on the wire).
pub mod to_worker {
    /// Begin work (groups with `start_gate`).
    pub const START: &[u8] = b"START";
    /// Finish in-flight work, then exit.
    pub const STOP_DRAIN: &[u8] = b"STOP DRAIN";
    /// Exit at once.
    pub const STOP_NOW: &[u8] = b"STOP NOW";
    /// Followed by the group's bootstrap payload (compact JSON) on the same line.
    pub const BOOTSTRAP_PREFIX: &[u8] = b"BOOTSTRAP ";
}

/// The environment variables the supervisor sets for its workers, and reads itself.
pub mod env {
    /// The prefix of every variable of the supervisor's own: a host's are not passed on.
    pub const PREFIX: &str = "MPSUP_";
    /// The worker's group name.
    pub const GROUP: &str = "MPSUP_GROUP";
    /// The worker's id (`group#n`).
    pub const WORKER_ID: &str = "MPSUP_WORKER_ID";
    /// The worker's end of its control socket.
    pub const CONTROL_FD: &str = "MPSUP_CONTROL_FD";
    /// `1`: a `BOOTSTRAP` line follows on the control channel.
    pub const BOOTSTRAP: &str = "MPSUP_BOOTSTRAP";
    /// `1`: the worker waits for `START` after `READY`.
    pub const START_GATE: &str = "MPSUP_START_GATE";
    /// `1`: the exec shim sets `LISTEN_PID` to its own pid (the worker's) before the exec.
    pub const EXEC_LISTEN_PID: &str = "MPSUP_EXEC_LISTEN_PID";
    /// Names of variables, `,`-separated, whose `{pid}` the exec shim replaces with its own pid
    /// (the worker's) before the exec (`{pid}` in a group's `env`).
    pub const EXEC_PID_VARS: &str = "MPSUP_EXEC_PID_VARS";
    /// systemd's socket activation, set for workers with listen sockets.
    pub const LISTEN_FDS: &str = "LISTEN_FDS";
    pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
    pub const LISTEN_PID: &str = "LISTEN_PID";
    /// systemd's sd_notify socket, set for workers with readiness `"sd_notify"`.
    pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

    /// What the host sets to change the supervisor's defaults (`Options::default`).
    pub const DISABLE_PIDFD: &str = "MPSUP_DISABLE_PIDFD";
    pub const SPAWN_THREADS: &str = "MPSUP_SPAWN_THREADS";
    pub const DISABLE_KEEPER: &str = "MPSUP_DISABLE_KEEPER";
    pub const KEEPER: &str = "MPSUP_KEEPER";
    pub const CGROUP: &str = "MPSUP_CGROUP";
    pub const SHARED_FD_TABLE: &str = "MPSUP_SHARED_FD_TABLE";
}
