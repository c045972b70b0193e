"""The library's JSON shapes as ``TypedDict``s: what goes in and what comes out.

They follow the JSON Schemas of the repository's ``schema/`` directory (which
:func:`mpsupervisor.schema` returns from the library), key for key; ``tests/test_schema_types.py``
fails when a key, a type or a closed set of strings differs. Use them to annotate your own
configuration and to read results::

    from typing import List, cast
    from mpsupervisor import Supervisor
    from mpsupervisor.types import Group, Status

    groups: List[Group] = [{"name": "web", "argv": ["./server"], "workers": 4,
                            "listen": [{"name": "http", "tcp": "127.0.0.1:0"}]}]
    with Supervisor() as sup:
        sup.configure_process_groups(groups)
        status: Status = sup.status()

Integers stay ``int``; a key whose value may be ``null`` is ``Optional``; keys with a default
are not required (``total=False``). Events are a ``Union`` of one ``TypedDict`` per kind, told
apart by ``event["kind"]``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, TypedDict, Union

__all__ = [
    # groups
    "Group", "Readiness", "ControlChannelMode", "Restart", "KillMode", "NotifyAccess", "Signal",
    "Listen", "TcpListen", "UnixListen", "Output", "OutputName", "FileOutput", "RotateOutput",
    # restart options, logging
    "RestartOptions", "LoggingSettings", "LifecycleEvents", "Level", "Exporter", "StdoutExporter",
    "StderrExporter", "JsonlExporter", "JsonlSettings", "ConsoleExporter", "ConsoleSettings",
    # snapshot, status
    "Snapshot", "WorkerSnapshot", "WorkerState", "LastExit", "ExitReason", "NotifyFacts",
    "StopStrategy", "ControlChannel", "Status", "GroupStatus", "ListenStatus", "RolloutStatus",
    "Guarantees",
    # events
    "Event", "EventKind", "StopMode", "WorkerSpawnedEvent", "SupervisorStartGroupsEvent",
    "WorkerReadyEvent", "WorkerStoppingEvent", "WorkerStoppedEvent", "WorkerFailedEvent",
    "WorkerStatusEvent", "WorkerSpawnFailedEvent", "StopEventUnavailableEvent",
    "WorkerProtocolErrorEvent", "WorkerUnkillableEvent", "EventsDroppedEvent",
    "WorkerRestartingEvent", "GroupFailedEvent", "SupervisorStartWorkEvent", "GroupScaledEvent",
    "RolloutStartedEvent", "WorkerReplacedEvent", "RolloutFinishedEvent", "RolloutFailedEvent",
    "WorkerSignaledEvent", "WorkerReloadingEvent", "WorkerReloadedEvent", "WorkerRecycledEvent",
    "RecycleReason", "DependsCondition", "OnDependencyRestart", "GroupFailReason",
    "GroupWaitingEvent", "GroupCompletedEvent", "SupervisorAdoptedEvent",
    "Probe", "ExecProbe", "TcpProbe", "HttpProbe", "ProbeKind", "ProbeFailedEvent", "WorkerUnreadyEvent",
]

# -- groups (schema/groups.schema.json) ---------------------------------------------------

Readiness = Literal["warmup", "notify", "sd_notify", "probe"]
ControlChannelMode = Literal["auto", "off"]
Restart = Literal["never", "on-failure", "always"]
RestartStrategy = Literal["one_for_one", "one_for_all"]
DependsCondition = Literal["started", "ready", "completed"]
OnDependencyRestart = Literal["ignore", "restart", "stop"]
KillMode = Literal["process_group", "mixed"]
NotifyAccess = Literal["main", "all"]
Signal = Literal[
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGALRM", "SIGPWR",
    "SIGWINCH",
]
OutputName = Literal["inherit", "null", "capture"]


class _TcpListenRequired(TypedDict):
    name: str
    tcp: str  # "IP:PORT" or "[IPV6]:PORT"; port 0 binds any free port


class TcpListen(_TcpListenRequired, total=False):
    backlog: int  # default 1024, 1 to 4096


class _UnixListenRequired(TypedDict):
    name: str
    unix: str  # a path, or an abstract socket's name after "@"


class UnixListen(_UnixListenRequired, total=False):
    backlog: int


Listen = Union[TcpListen, UnixListen]


class _FileOutputRequired(TypedDict):
    file: str


class FileOutput(_FileOutputRequired, total=False):
    """A file the worker writes itself."""

    append: bool  # default True; False truncates the file at each spawn


class _RotateOutputRequired(TypedDict):
    file: str
    max_bytes: int


class RotateOutput(_RotateOutputRequired, total=False):
    """A file the supervisor writes, rotated at ``max_bytes`` (``PATH.1`` ... ``PATH.keep``)."""

    keep: int  # default 3


Output = Union[OutputName, FileOutput, RotateOutput]


class _ProbeTiming(TypedDict, total=False):
    period_ms: int  # default 1000, 10 or more
    timeout_ms: int  # default 1000
    initial_delay_ms: int  # default 0
    failure_threshold: int  # default 3, 1 to 1000
    success_threshold: int  # default 1, 1 to 1000


class _ExecProbeRequired(TypedDict):
    exec: List[str]  # success: exit status 0


class ExecProbe(_ExecProbeRequired, _ProbeTiming, total=False):
    """Runs a program with the worker's environment (``{index}``, ``{pid}``, ``{port}`` replaced)."""


class _TcpProbeRequired(TypedDict):
    tcp: str  # "ip:port" or "localhost:port"; success: the connection is accepted


class TcpProbe(_TcpProbeRequired, _ProbeTiming, total=False):
    """Connects to the worker."""


class _HttpProbeRequired(TypedDict):
    http: str  # "http://ip:port/path"; success: a status from 200 to 399


class HttpProbe(_HttpProbeRequired, _ProbeTiming, total=False):
    """Asks the worker for a page."""


# A probe of each worker (API.md part 8); {port} is port_base + index - 1.
Probe = Union[ExecProbe, TcpProbe, HttpProbe]


# One bound of a resource limit: a number or "infinity"; a limit is one bound (soft and hard)
# or [soft, hard].
Limit = Union[int, Literal["infinity"]]
Rlimit = Union[Limit, List[Limit]]

# The limits a group's workers start with (setrlimit); absent ones are the host's. Functional
# syntax, since "as" is a keyword. None is the same as absent.
Rlimits = TypedDict(
    "Rlimits",
    {
        "nofile": Optional[Rlimit],
        "core": Optional[Rlimit],
        "nproc": Optional[Rlimit],
        "as": Optional[Rlimit],
        "memlock": Optional[Rlimit],
        "stack": Optional[Rlimit],
        "cpu": Optional[Rlimit],
        "fsize": Optional[Rlimit],
    },
    total=False,
)


class _GroupRequired(TypedDict):
    name: str
    argv: List[str]


class Group(_GroupRequired, total=False):
    """One group of workers (an item of what ``configure_process_groups`` takes)."""

    workers: int  # default 1, 1 to 4096
    env: Dict[str, str]
    inherit_env: bool  # default True
    cwd: Optional[str]  # default: the host's
    readiness: Readiness  # default "warmup"
    warmup_ms: int  # default 20
    control_channel: ControlChannelMode  # default "auto"
    stop_signal: Signal  # default "SIGTERM"
    kill_mode: KillMode  # default "process_group"
    notify_access: NotifyAccess  # default "main"
    stdout: Output  # default "inherit"
    stderr: Output  # default "inherit"
    output_tail_lines: int  # default 20
    listen: List[Listen]  # default []
    reuse_port: bool  # default False
    user: Optional[Union[str, int]]  # default: the host's; brings that user's groups
    group: Optional[Union[str, int]]  # default: the user's primary group
    supplementary_groups: Optional[List[Union[str, int]]]  # [] clears them; default: the user's
    umask: Optional[str]  # 3 or 4 octal digits, such as "0027"
    no_new_privileges: bool  # default False
    rlimits: Rlimits  # default {}
    env_files: List[str]  # absolute paths, "-" before one: may be missing
    restart: Restart  # default "never"
    restart_strategy: RestartStrategy  # default "one_for_one"
    restart_delay_ms: int  # default 100
    restart_delay_max_ms: int  # default 30000
    backoff_reset_ms: int  # default 10000
    max_restarts: int  # default 5
    restart_window_ms: int  # default 60000
    ready_timeout_ms: int  # default 0: off
    heartbeat_timeout_ms: int  # default 0: off
    bootstrap: Any  # any JSON value, null included; absent: no BOOTSTRAP line
    start_gate: bool  # default False
    stop_timeout_ms: int  # default 10000
    # Resource limits, per worker process with its descendants (cgroups; absent: no limit).
    memory_max: Optional[Union[int, str]]  # bytes, "512M" (K, M, G, T: powers of 1024) or "max"
    memory_high: Optional[Union[int, str]]  # as memory_max; cgroup v2 only
    pids_max: Optional[Union[int, Literal["max"]]]  # 1 to 4194304
    cpu_max: Optional[str]  # "50%" of one core, "QUOTA PERIOD" in µs, or "max"
    # one group at a time, recycling (API.md part 7)
    reload_signal: Signal  # default "SIGHUP"
    max_rss_bytes: int  # default 0: off
    rss_sample_ms: int  # default 5000, 10 or more
    max_lifetime_ms: int  # default 0: off
    lifetime_jitter_ms: int  # default 0
    # dependencies between groups (API.md part 8)
    depends_on: Dict[str, DependsCondition]  # default {}
    on_dependency_restart: OnDependencyRestart  # default "ignore"
    # probes (API.md part 8)
    readiness_probe: Optional[Probe]  # unready after failure_threshold failures; "probe" readiness
    liveness_probe: Optional[Probe]  # killed after failure_threshold failures: liveness_failed
    port_base: Optional[int]  # {port} is port_base + index - 1


# -- restart options (schema/restart-options.schema.json) --------------------------------


class RestartOptions(TypedDict, total=False):
    """The options of ``restart_groups``."""

    max_surge: int  # default 1
    max_unavailable: int  # default 0
    ready_timeout_ms: int  # default 30000


# -- logging (schema/logging.schema.json) ------------------------------------------------

Level = Literal["debug", "info", "warn", "error"]


class LifecycleEvents(TypedDict, total=False):
    enabled: bool  # default True
    level: Level  # default "info"


class StdoutExporter(TypedDict):
    kind: Literal["stdout"]


class StderrExporter(TypedDict):
    kind: Literal["stderr"]


class JsonlSettings(TypedDict):
    path: str


class JsonlExporter(TypedDict):
    kind: Literal["jsonl"]
    settings: JsonlSettings


class ConsoleSettings(TypedDict, total=False):
    stream: Literal["stdout", "stderr"]  # default "stdout"


class _ConsoleExporterRequired(TypedDict):
    kind: Literal["console"]


class ConsoleExporter(_ConsoleExporterRequired, total=False):
    settings: Optional[ConsoleSettings]


Exporter = Union[StdoutExporter, StderrExporter, JsonlExporter, ConsoleExporter]


class LoggingSettings(TypedDict, total=False):
    """What ``configure_lifecycle_logging`` takes."""

    lifecycle_events: LifecycleEvents
    exporters: List[Exporter]  # default []


# -- snapshot (schema/snapshot.schema.json) ----------------------------------------------

WorkerState = Literal["starting", "ready", "reloading", "stopping", "restarting", "failed"]
ExitReason = Literal[
    "exited", "ready_timeout", "heartbeat_timeout", "stopped", "oom_killed", "liveness_failed"
]
ProbeKind = Literal["readiness", "liveness"]
StopStrategy = Literal["event", "terminate_fallback"]
ControlChannel = Literal["socketpair", "unavailable"]


class LastExit(TypedDict):
    exit_code: Optional[int]
    signal: Optional[int]
    reason: ExitReason
    at_ms: int


class NotifyFacts(TypedDict):
    stopping: bool
    reloading: bool
    errno: Optional[int]
    exit_status: Optional[str]


class WorkerSnapshot(TypedDict):
    """One worker of the snapshot."""

    worker_id: str  # "<group>#<index>", index from 1
    pid: int
    os_pid: int
    alive: bool
    ready: bool
    state: WorkerState
    pgid: int
    exit_code: Optional[int]
    signal: Optional[int]
    has_stop_event: bool
    stop_strategy: StopStrategy
    control_channel: ControlChannel
    started_at_ms: int
    restarts: int
    last_heartbeat_ms: Optional[int]
    generation: int
    uptime_ms: Optional[int]
    last_exit: Optional[LastExit]
    status: Optional[str]
    rss_bytes: Optional[int]
    cpu_ms: Optional[int]
    stderr_tail: Optional[List[str]]
    notify: Optional[NotifyFacts]


Snapshot = Dict[str, List[WorkerSnapshot]]

# -- status (schema/status.schema.json) --------------------------------------------------


class ListenStatus(TypedDict):
    name: str
    address: str  # "IP:PORT" with the bound port, or the Unix path


class RolloutStatus(TypedDict):
    generation: int
    state: Literal["running", "failed"]
    replaced: int
    remaining: int
    worker_id: Optional[str]
    reason: Optional[str]


class GroupStatus(TypedDict):
    started: bool
    failed: bool
    generation: int
    target: int
    running: int
    ready: int
    rollout: Optional[RolloutStatus]
    listen: List[ListenStatus]
    waiting_for: List[str]


class Guarantees(TypedDict):
    exit_watch: Literal["pidfd", "poll"]
    spawn: Literal["posix_spawn"]
    host_death: Literal["keeper", "none"]
    tree_kill: Literal["cgroup", "process_group"]
    parallel_spawn: int
    reuse_port_handoff: Literal["migrate", "reset"]
    limits: Literal["cgroup2", "cgroup1", "none"]


class Status(TypedDict):
    """What ``status`` returns."""

    groups: Dict[str, GroupStatus]
    guarantees: Guarantees
    notify_socket: Optional[str]
    notify_received: int
    notify_dropped: int
    output_lines_dropped: int
    output_bytes_dropped: int


# -- events (schema/events.schema.json) --------------------------------------------------

EventKind = Literal[
    "worker_spawned", "supervisor_start_groups", "worker_ready", "worker_stopping",
    "worker_stopped", "worker_failed", "worker_status", "worker_spawn_failed",
    "stop_event_unavailable", "worker_protocol_error", "worker_unkillable", "events_dropped",
    "worker_restarting", "group_failed", "supervisor_start_work", "group_scaled",
    "rollout_started", "worker_replaced", "rollout_finished", "rollout_failed",
    "worker_signaled", "worker_reloading", "worker_reloaded", "worker_recycled",
    "group_waiting", "group_completed", "supervisor_adopted",
]
StopMode = Literal["graceful", "forced"]


class _EventBase(TypedDict):
    seq: int  # from 1, +1 each, gapless
    ts_ms: int  # Unix time in ms


class WorkerSpawnedEvent(_EventBase):
    kind: Literal["worker_spawned"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    stop_strategy: StopStrategy
    control_channel: ControlChannel
    readiness: Readiness


class SupervisorStartGroupsEvent(_EventBase):
    kind: Literal["supervisor_start_groups"]
    group_count: int
    worker_count: int


class WorkerReadyEvent(_EventBase):
    kind: Literal["worker_ready"]
    group_name: str
    worker_id: str
    pid: int
    generation: int


class WorkerStoppingEvent(_EventBase):
    kind: Literal["worker_stopping"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    mode: StopMode


class _WorkerStoppedRequired(_EventBase):
    kind: Literal["worker_stopped"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    mode: StopMode
    exit_code: Optional[int]
    signal: Optional[int]


class WorkerStoppedEvent(_WorkerStoppedRequired, total=False):
    status_unavailable: bool  # present (True) when someone else reaped the worker first


class _WorkerFailedRequired(_EventBase):
    kind: Literal["worker_failed"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    reason: ExitReason
    exit_code: Optional[int]
    signal: Optional[int]
    stderr_tail: List[str]


class WorkerFailedEvent(_WorkerFailedRequired, total=False):
    status_unavailable: bool


class WorkerStatusEvent(_EventBase):
    kind: Literal["worker_status"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    status: str


class WorkerSpawnFailedEvent(_EventBase):
    kind: Literal["worker_spawn_failed"]
    group_name: str
    worker_id: str
    generation: int
    error: str


class StopEventUnavailableEvent(_EventBase):
    kind: Literal["stop_event_unavailable"]
    group_name: str
    worker_id: str
    generation: int
    fallback: StopStrategy
    error: str


class WorkerProtocolErrorEvent(_EventBase):
    kind: Literal["worker_protocol_error"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    error: str


class WorkerUnkillableEvent(_EventBase):
    kind: Literal["worker_unkillable"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    error: str


class EventsDroppedEvent(_EventBase):
    kind: Literal["events_dropped"]
    count: int


class WorkerRestartingEvent(_EventBase):
    kind: Literal["worker_restarting"]
    group_name: str
    worker_id: str
    generation: int
    attempt: int
    delay_ms: int


GroupFailReason = Literal["too_many_restarts", "dependency_failed"]


class GroupFailedEvent(_EventBase):
    kind: Literal["group_failed"]
    group_name: str
    restarts: int
    window_ms: int
    reason: GroupFailReason
    dependency: Optional[str]


class GroupWaitingEvent(_EventBase):
    kind: Literal["group_waiting"]
    group_name: str
    waiting_for: List[str]


class GroupCompletedEvent(_EventBase):
    kind: Literal["group_completed"]
    group_name: str
    workers: int


class SupervisorAdoptedEvent(_EventBase):
    kind: Literal["supervisor_adopted"]
    workers: int
    exited_meanwhile: int


class SupervisorStartWorkEvent(_EventBase):
    kind: Literal["supervisor_start_work"]
    group_count: int
    worker_count: int


# "from" is a Python keyword: this one is spelled in the functional form.
GroupScaledEvent = TypedDict(
    "GroupScaledEvent",
    {"seq": int, "ts_ms": int, "kind": Literal["group_scaled"], "group_name": str, "from": int, "to": int},
)


class RolloutStartedEvent(_EventBase):
    kind: Literal["rollout_started"]
    group_name: str
    generation: int
    workers: int


class WorkerReplacedEvent(_EventBase):
    kind: Literal["worker_replaced"]
    group_name: str
    worker_id: str
    generation: int
    old_pid: Optional[int]
    new_pid: int


class RolloutFinishedEvent(_EventBase):
    kind: Literal["rollout_finished"]
    group_name: str
    generation: int
    duration_ms: int


class RolloutFailedEvent(_EventBase):
    kind: Literal["rollout_failed"]
    group_name: str
    worker_id: str
    generation: int
    reason: str


class WorkerSignaledEvent(_EventBase):
    kind: Literal["worker_signaled"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    signal: int


class WorkerReloadingEvent(_EventBase):
    kind: Literal["worker_reloading"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    signal: int


class WorkerReloadedEvent(_EventBase):
    kind: Literal["worker_reloaded"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    duration_ms: int


RecycleReason = Literal["max_rss", "max_lifetime", "requested"]


class WorkerRecycledEvent(_EventBase):
    kind: Literal["worker_recycled"]
    group_name: str
    worker_id: str
    generation: int
    reason: RecycleReason
    old_pid: int
    new_pid: int
    rss_bytes: Optional[int]
    age_ms: int


class ProbeFailedEvent(_EventBase):
    kind: Literal["probe_failed"]
    group_name: str
    worker_id: str
    pid: int
    generation: int
    probe: ProbeKind
    detail: str  # "connect: Connection refused", "HTTP 503", "exec: exit status 1", ...
    failures: int  # its failures in a row so far


class WorkerUnreadyEvent(_EventBase):
    kind: Literal["worker_unready"]
    group_name: str
    worker_id: str
    pid: int
    generation: int


Event = Union[
    WorkerSpawnedEvent, SupervisorStartGroupsEvent, WorkerReadyEvent, WorkerStoppingEvent,
    WorkerStoppedEvent, WorkerFailedEvent, WorkerStatusEvent, WorkerSpawnFailedEvent,
    StopEventUnavailableEvent, WorkerProtocolErrorEvent, WorkerUnkillableEvent, EventsDroppedEvent,
    WorkerRestartingEvent, GroupFailedEvent, SupervisorStartWorkEvent, GroupScaledEvent,
    RolloutStartedEvent, WorkerReplacedEvent, RolloutFinishedEvent, RolloutFailedEvent,
    WorkerSignaledEvent, WorkerReloadingEvent, WorkerReloadedEvent, WorkerRecycledEvent,
    GroupWaitingEvent, GroupCompletedEvent, ProbeFailedEvent, WorkerUnreadyEvent, SupervisorAdoptedEvent,
]
