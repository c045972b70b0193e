//! The status's types: what `Supervisor::status` returns and `mpsup_status_json` writes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every configured or started group's state, and what holds on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Status")]
pub struct Status {
    /// Group name → its state, for every configured or started group.
    pub groups: BTreeMap<String, GroupStatus>,
    /// The mechanisms in force on this host.
    pub guarantees: Guarantees,
    /// The `NOTIFY_SOCKET` of `sd_notify` workers, or null before the first one starts.
    pub notify_socket: Option<String>,
    /// Datagrams read from it.
    pub notify_received: u64,
    /// Of those, the ones dropped.
    pub notify_dropped: u64,
    /// Captured lines that did not fit in the log writer's queue.
    pub output_lines_dropped: u64,
    /// Captured bytes that did not fit in the rotating-file writer's queue.
    pub output_bytes_dropped: u64,
}

/// One group's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupStatus {
    /// Started and not stopped since: the library keeps its worker count.
    pub started: bool,
    /// Failed for too many restarts.
    pub failed: bool,
    /// The newest generation it runs (that of a rollout in progress).
    pub generation: u32,
    /// The worker count the library keeps (0 when not started).
    pub target: u32,
    /// Workers with a process that are not stopping.
    pub running: u32,
    /// Of those, the ready ones (a worker reloading is not).
    pub ready: u32,
    /// The latest rolling restart, or null.
    pub rollout: Option<RolloutStatus>,
    /// The group's open listen sockets.
    pub listen: Vec<ListenStatus>,
    /// Started and waiting for these dependencies (`depends_on`) to reach their conditions;
    /// empty otherwise.
    pub waiting_for: Vec<String>,
}

/// Whether a rolling restart is under way or halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Replacing workers.
    Running,
    /// Halted: a new worker failed.
    Failed,
}

/// A group's latest rolling restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutStatus {
    /// The generation it rolls out.
    pub generation: u32,
    /// Under way or halted.
    pub state: RolloutState,
    /// Workers replaced so far.
    pub replaced: u32,
    /// Workers still to replace.
    pub remaining: u32,
    /// The worker whose failure halted it, or null.
    pub worker_id: Option<String>,
    /// Why it halted, or null.
    pub reason: Option<String>,
}

/// One open listen socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenStatus {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// `IP:PORT` with the bound port, or the Unix path.
    pub address: String,
}

/// The mechanisms in force on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Guarantees {
    /// How worker exits are watched.
    pub exit_watch: ExitWatch,
    /// How workers are spawned.
    pub spawn: SpawnMethod,
    /// What kills the workers when the host dies.
    pub host_death: HostDeath,
    /// What a forced stop kills.
    pub tree_kill: TreeKill,
    /// How many spawner threads may run at once.
    pub parallel_spawn: u32,
    /// What a worker closing its `reuse_port` socket does to the connections queued on it.
    pub reuse_port_handoff: ReusePortHandoff,
    /// Which cgroups hold the groups' limits (`memory_max`, `pids_max`, ...).
    pub limits: LimitsMechanism,
}

/// Which cgroups hold the groups' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitsMechanism {
    /// cgroup v2: the memory, pids and cpu controllers are all there, in a writable cgroup.
    Cgroup2,
    /// Some or all of them are cgroup v1 hierarchies (a hybrid host), writable.
    Cgroup1,
    /// No writable hierarchy has them: a group with a limit cannot start.
    None,
}

/// How worker exits are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitWatch {
    /// A pidfd per worker in the monitor's epoll set.
    Pidfd,
    /// `waitid(WNOHANG)` rounds, where pidfds are denied or disabled.
    Poll,
}

/// How workers are spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpawnMethod {
    /// `posix_spawn(3)`.
    PosixSpawn,
}

/// What kills the workers when the host dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostDeath {
    /// The `mpsup-keeper` process runs.
    Keeper,
    /// Nothing: not found, disabled by `MPSUP_DISABLE_KEEPER=1`, or gone.
    None,
}

/// What a forced stop kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TreeKill {
    /// Each worker process's own cgroup: descendants that left its process group die too.
    Cgroup,
    /// The worker's process group.
    ProcessGroup,
}

/// What closing a `reuse_port` socket does to the connections queued on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReusePortHandoff {
    /// Moved to the other sockets of its group (`net.ipv4.tcp_migrate_req` is 1).
    Migrate,
    /// Reset.
    Reset,
}
