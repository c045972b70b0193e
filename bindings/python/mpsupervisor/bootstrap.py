"""Drop-ins for the stream_kernel ``BootstrapSupervisor`` classes, and their discovery."""

from __future__ import annotations

import math
import os
import site
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, Union

from ._errors import InvalidHandleError, UnknownGroupError
from .supervisor import Supervisor, group_names as _group_names
from .types import Group

# Group keys libmpsupervisor knows: those of mpsupervisor.types.Group, which a test holds to
# the library's schema (schema/groups.schema.json).
LIBRARY_GROUP_KEYS = frozenset(Group.__required_keys__ | Group.__optional_keys__)

# The keys the original framework puts in a group of its own (runtime.platform.process_groups[]:
# placement selectors and its runner's settings) besides `name` and `workers`. They mean nothing
# to the library and are left out of what it gets. Every other key goes to the library as it is,
# so a key of the library's works and an unknown one is rejected with the library's message.
ORIGINAL_GROUP_KEYS = frozenset(
    {
        "nodes", "stages", "tags", "runners",  # placement of the framework's nodes
        "runner_profile", "services", "heartbeat_seconds", "start_timeout_seconds",
        "stop_timeout_seconds",  # the framework's runner, in its worker processes
    }
)

BUNDLED_WORKER_MODULE = "mpsupervisor.worker"


def _validated_group(group: Any, where: str) -> Dict[str, Any]:
    """The checks the original applied (it skipped bad entries; we raise ValueError)."""
    if not isinstance(group, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(group).__name__}")
    name = group.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string, got {name!r}")
    workers = group.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers <= 0:
        raise ValueError(f"{where}.workers must be an integer > 0, got {workers!r}")
    env = group.get("env")
    if env is not None and not isinstance(env, Mapping):
        raise ValueError(f"{where}.env must be a mapping of strings, got {type(env).__name__}")
    return dict(group)


def _check_unique(seen: Mapping[str, Any], name: str, index: int) -> None:
    if name in seen:
        raise ValueError(f"groups[{index}].name: duplicate group name {name!r}")


def _package_parent() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _site_dirs() -> List[str]:
    dirs: List[str] = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # some virtualenv builds lack it
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    return [str(Path(d).resolve()) for d in dirs]


def _child_pythonpath(group: Mapping[str, Any], env: Mapping[str, str]) -> Optional[str]:
    """The PYTHONPATH the bundled worker needs to import this package, or None if it needs none."""
    parent = _package_parent()
    if parent in _site_dirs():
        return None
    inherited = env.get("PYTHONPATH")
    if inherited is None and group.get("inherit_env", True) is not False:
        inherited = os.environ.get("PYTHONPATH")
    entries = [e for e in (inherited or "").split(os.pathsep) if e]
    if any(str(Path(e).resolve()) == parent for e in entries):
        return None
    return os.pathsep.join([parent] + entries)


def library_group(group: Mapping[str, Any]) -> Dict[str, Any]:
    """A validated group dict as the library takes it: every key but the original framework's
    own (:data:`ORIGINAL_GROUP_KEYS`), which are left out. A key the library does not know is
    kept, for the library to reject with its own message.

    Without ``argv`` the group runs the bundled worker (``python -m mpsupervisor.worker``)
    with readiness ``"notify"`` unless the group sets its own, and with the environment
    it needs (``PYTHONPATH`` when the package is not installed in ``site-packages``,
    the heartbeat interval of :mod:`mpsupervisor.worker`).
    """
    out = {key: value for key, value in group.items() if key not in ORIGINAL_GROUP_KEYS}
    if "argv" in out:
        return out
    # Imported here, not at the top: `python -m mpsupervisor.worker` imports this package
    # first, and runpy warns when the module it runs is already in sys.modules.
    from . import worker

    out["argv"] = [sys.executable or "python3", "-m", BUNDLED_WORKER_MODULE]
    out.setdefault("readiness", "notify")
    env: Dict[str, str] = dict(out.get("env") or {})
    pythonpath = _child_pythonpath(out, env)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    heartbeat_ms = out.get("heartbeat_timeout_ms")
    if isinstance(heartbeat_ms, int) and not isinstance(heartbeat_ms, bool) and heartbeat_ms > 0:
        env[worker.HEARTBEAT_MS_ENV] = str(max(1, heartbeat_ms // 3))
    if env:
        out["env"] = env
    return out


# The original framework's level names, as the library's.
_LOG_LEVELS = {
    "debug": "debug", "full": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error",
}


def library_logging(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The original framework's lifecycle logging settings, as the library takes them.

    Only ``stdout``, ``stderr`` and ``jsonl`` (with ``settings.path``) exporters are kept,
    without their other settings; levels ``off``/``none`` disable logging, ``full`` is
    ``debug``, ``warning`` is ``warn`` and unknown ones are ``info``; when logging is on
    and no exporter is left, records go to stdout (the original's default).
    """
    if not isinstance(settings, Mapping):
        raise ValueError("lifecycle logging settings must be a mapping")
    events = settings.get("lifecycle_events")
    events = events if isinstance(events, Mapping) else {}
    level = events.get("level", "info")
    level = level.lower() if isinstance(level, str) else "info"
    enabled = bool(events.get("enabled", True)) and level not in ("off", "none")
    exporters: List[Dict[str, Any]] = []
    raw_exporters = settings.get("exporters")
    for exporter in raw_exporters if isinstance(raw_exporters, list) else []:
        if not isinstance(exporter, Mapping) or exporter.get("enabled", True) is False:
            continue
        kind = exporter.get("kind")
        if kind in ("stdout", "stderr"):
            exporters.append({"kind": kind})
        elif kind == "jsonl":
            options = exporter.get("settings")
            path = options.get("path") if isinstance(options, Mapping) else None
            if isinstance(path, str) and path:
                exporters.append({"kind": "jsonl", "settings": {"path": path}})
    if enabled and not exporters:
        exporters.append({"kind": "stdout"})
    return {
        "lifecycle_events": {"enabled": enabled, "level": _LOG_LEVELS.get(level, "info")},
        "exporters": exporters,
    }


@dataclass
class LifecycleLogRecord:
    """One lifecycle record for a host's log sink, in the original's shape.

    The original framework's ``LogMessage`` has these four attributes; a subclass that
    hands the supervisor the framework's sinks sets ``log_record_type = LogMessage``."""

    level: str
    message: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(tz=timezone.utc))
    fields: Dict[str, object] = field(default_factory=dict)


def _original_logging_settings(settings: object) -> Dict[str, Any]:
    """The original's checks of its logging settings: ``{"enabled", "level", "exporters"}``."""
    if not isinstance(settings, Mapping):
        settings = {}
    lifecycle = settings.get("lifecycle_events", {})
    if lifecycle is None:
        lifecycle = {}
    if not isinstance(lifecycle, Mapping):
        raise ValueError("runtime.observability.logging.lifecycle_events must be a mapping when provided")
    enabled = lifecycle.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("runtime.observability.logging.lifecycle_events.enabled must be a boolean when provided")
    level = lifecycle.get("level", "info")
    if not isinstance(level, str) or not level:
        raise ValueError("runtime.observability.logging.lifecycle_events.level must be a non-empty string")
    exporters = settings.get("exporters", [])
    if not isinstance(exporters, list):
        raise ValueError("runtime.observability.logging.exporters must be a list when provided")
    return {"enabled": enabled, "level": level, "exporters": exporters}


def original_lifecycle_log_sinks(
    settings: Mapping[str, Any],
    *,
    stdout_sink: Callable[[], object],
    resolve: Optional[Callable[..., Optional[object]]] = None,
) -> List[object]:
    """The sinks the original framework's ``configure_lifecycle_logging`` picks for these
    settings, built by the framework's own code: what a subclass in the framework returns from
    :meth:`MultiprocessBootstrapSupervisor.lifecycle_log_sinks`.

    ``resolve`` is the framework's sink resolver when it has one, called as
    ``resolve(settings=dict(settings))``; it returns one sink (its ``JsonlLogSink`` for a
    ``jsonl`` exporter, its ``StdoutLogSink`` for ``stdout``, its fan-out of several) or None.
    Without one (the framework's earlier versions), the first ``stdout`` exporter gives
    ``stdout_sink()`` and nothing else does. When logging is enabled and no sink results,
    ``stdout_sink()`` (the framework's ``StdoutLogSink``), the original's default; disabled and
    none: ``[]``. The settings are checked as the original checked them (ValueError).
    """
    checked = _original_logging_settings(settings)
    sink: Optional[object] = None
    if resolve is not None:
        sink = resolve(settings=dict(settings))
    else:
        for exporter in checked["exporters"]:
            if isinstance(exporter, Mapping) and exporter.get("kind") == "stdout":
                sink = stdout_sink()
                break
    if sink is None and checked["enabled"]:
        sink = stdout_sink()
    return [sink] if sink is not None else []


def _not_implemented(call: str, why: str) -> NotImplementedError:
    return NotImplementedError(f"MultiprocessBootstrapSupervisor.{call} is not implemented by mpsupervisor: {why}")


class MultiprocessBootstrapSupervisor:
    """Drop-in for stream_kernel's ``MultiprocessBootstrapSupervisor``, on libmpsupervisor.

    Same method names, arguments and return types as the original. Differences, all on
    purpose: a bad group (missing or empty ``name``, ``workers`` not an int > 0) raises
    ValueError instead of being skipped; every key of a group goes to the library, but for
    the original framework's own (:data:`ORIGINAL_GROUP_KEYS`, such as ``nodes``), so an
    unknown key raises ValueError with the library's message; workers are real processes of any executable
    (``argv``), the bundled Python worker when a group has none; events have the
    library's shapes (``seq``, ``ts_ms``, ``kind``, ...) plus the original's
    ``ts_epoch_ms``; ``force_terminate_groups`` ignores names the library does not know,
    as the original did.

    As in the original: ``stop_groups`` waits at least one second; ``snapshot()`` lists
    the groups started since the last graceful stop (``[]`` for one force-terminated),
    so it is ``{}`` after a graceful stop; ``lifecycle_events()`` keeps every event for
    the life of the object, including the forced stops of ``close()``, and still answers
    after it; ``_emit_event(kind=..., **fields)`` records an event of the host's own.

    Lifecycle logging: ``configure_lifecycle_logging`` takes the original's settings.
    When :meth:`lifecycle_log_sinks` gives sinks (a subclass in the host framework
    returns the framework's own, e.g. its ``StdoutLogSink``), every event goes to each
    sink's ``emit(record)`` as a ``log_record_type`` (``level`` = the configured level,
    ``message`` = ``"bootstrap.<kind>"``, ``timestamp``, ``fields`` = the event), once it
    has been read from the library, which happens at the end of every call of this
    class. Without sinks, the library writes the records itself (see
    :func:`library_logging`).

    What the original did and this class does not (boundary execution, the routing
    cache) raises NotImplementedError naming the call, rather than returning nothing.

    Constructing it loads the native library and raises OSError when it cannot.
    """

    #: The record type handed to the sinks (the original's ``LogMessage`` has the same fields).
    log_record_type: Callable[..., object] = LifecycleLogRecord

    def __init__(self, supervisor: Optional[Supervisor] = None) -> None:
        self._sup = supervisor if supervisor is not None else Supervisor()
        self._config_lock = threading.Lock()
        self._groups: Dict[str, Dict[str, Any]] = {}
        self._listed: Dict[str, None] = {}  # groups snapshot() lists, as the original's _workers
        # Reentrant: a sink may call back into this object.
        self._events_lock = threading.RLock()
        self._events: List[Dict[str, Any]] = []
        self._log_sinks: Optional[List[object]] = None  # None: the library logs
        self._log_level = "info"
        self._log_enabled = False
        self._child_bundle: object = None

    def lifecycle_log_sinks(self, settings: Dict[str, object]) -> Optional[Sequence[object]]:
        """The sinks for lifecycle records under these settings, or None for the library's own.

        Override in the host framework to hand the supervisor its sinks: objects with an
        ``emit(record)`` method. The default, None, lets the library write the records."""
        _ = settings
        return None

    @property
    def supervisor(self) -> Supervisor:
        """The underlying :class:`Supervisor` (for ``event_fd``, ``drain_events``, ...)."""
        return self._sup

    def close(self) -> None:
        """Force-terminate every worker and free the handle. Safe to call twice.

        The events of the forced stops are kept for :meth:`lifecycle_events`."""
        with self._events_lock:
            try:
                names = list(dict.fromkeys([*self._groups, *self._sup.snapshot()]))
                if names:
                    self._force_terminate(names)
                self._drain_locked()
            except InvalidHandleError:  # closed already, or a forked child: nothing to stop
                pass
            finally:
                self._sup.close()

    def __enter__(self) -> "MultiprocessBootstrapSupervisor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the original's methods ----------------------------------------------------------

    def configure_process_groups(self, groups: List[Dict[str, object]]) -> None:
        new: Dict[str, Dict[str, Any]] = {}
        for index, group in enumerate(groups):
            checked = _validated_group(group, f"groups[{index}]")
            _check_unique(new, checked["name"], index)
            new[checked["name"]] = library_group(checked)
        with self._config_lock:
            self._sup.configure_process_groups(list(new.values()))
            self._groups = new

    def start_groups(self, group_names: List[str]) -> None:
        """Start the groups; a name never configured gets one bundled worker."""
        names = _group_names(group_names)
        try:
            with self._config_lock:
                missing = [name for name in names if name not in self._groups]
                if missing:
                    groups = dict(self._groups)
                    for name in missing:
                        where = f"group_names[{names.index(name)}]"
                        groups[name] = library_group(_validated_group({"name": name}, where))
                    self._sup.configure_process_groups(list(groups.values()))
                    self._groups = groups
                self._sup.start_groups(names)
                for name in names:
                    self._listed[name] = None
        finally:
            self._pump()

    def wait_ready(self, timeout_seconds: float) -> bool:
        try:
            return self._sup.wait_ready(timeout_seconds)
        finally:
            self._pump()

    def stop_groups(self, *, graceful_timeout_seconds: float, drain_inflight: bool) -> None:
        """Stop every worker gracefully; TimeoutError names the first worker still alive.

        Waits ``max(1, graceful_timeout_seconds)`` seconds at most, as the original did
        (so 0, negative and NaN mean one second). After a TimeoutError the workers that
        did stop are gone; ``force_terminate_groups`` then ends only the others."""
        try:
            self._sup.stop_groups(max(1.0, float(graceful_timeout_seconds)), drain_inflight)
            with self._config_lock:
                self._listed.clear()
        finally:
            self._pump()

    def force_terminate_groups(self, group_names: List[str]) -> None:
        """Kill the groups' workers; names the library never knew are ignored, as in the original."""
        try:
            self._force_terminate(_group_names(group_names))
        finally:
            self._pump()

    def _force_terminate(self, names: List[str]) -> None:
        try:
            self._sup.force_terminate_groups(names)
        except UnknownGroupError:
            # The library checks all names before killing anything; go one by one.
            for name in names:
                try:
                    self._sup.force_terminate_groups([name])
                except UnknownGroupError:
                    pass

    def snapshot(self) -> Dict[str, List[Dict[str, object]]]:
        """The library's snapshot, plus ``[]`` for each group started since the last
        graceful stop that has no workers left (the original's shape)."""
        with self._config_lock:
            listed = list(self._listed)
        snap: Dict[str, List[Dict[str, object]]] = {
            name: [dict(entry) for entry in workers] for name, workers in self._sup.snapshot().items()
        }
        for workers in snap.values():
            for entry in workers:
                entry.setdefault("has_control_channel", entry.get("control_channel") == "socketpair")
        for name in listed:
            snap.setdefault(name, [])
        self._pump()
        return snap

    def lifecycle_events(self) -> List[Dict[str, object]]:
        """Every event so far, oldest first (a copy; calling it drains nothing you can see).

        After :meth:`close` it returns what was kept, the forced stops of ``close`` included."""
        with self._events_lock:
            self._pump()
            return [dict(event) for event in self._events]

    def _pump(self) -> None:
        """Read the library's new events into the kept list (and the sinks)."""
        with self._events_lock:
            try:
                self._drain_locked()
            except InvalidHandleError:  # closed, or a forked child
                pass

    def _drain_locked(self) -> None:
        for event in self._sup.drain_events():
            event.setdefault("ts_epoch_ms", event["ts_ms"])
            self._record_locked(event)

    def _emit_event(self, *, kind: str, **fields: object) -> None:
        """Record an event of the host's own (the original's hook): kept for
        ``lifecycle_events()`` and logged like the library's."""
        event: Dict[str, Any] = {"kind": kind, "ts_epoch_ms": int(time.time() * 1000), **fields}
        with self._events_lock:
            self._pump()
            self._record_locked(event)

    def _record_locked(self, event: Dict[str, Any]) -> None:
        self._events.append(event)
        sinks = self._log_sinks
        if not self._log_enabled or not sinks:
            return
        stamp = datetime.fromtimestamp(event["ts_epoch_ms"] / 1000, tz=timezone.utc)
        for sink in sinks:
            emit = getattr(sink, "emit", None)
            if not callable(emit):
                continue
            try:
                emit(
                    self.log_record_type(
                        level=self._log_level,
                        message=f"bootstrap.{event['kind']}",
                        timestamp=stamp,
                        fields=dict(event),
                    )
                )
            except Exception:  # as the original: a failing sink never fails the supervisor
                continue

    # -- the original's calls this class does not implement ------------------------------

    def execute_boundary(self, *, run: Callable[[], None], run_id: str, scenario_id: str, inputs: List[object]) -> Any:
        """Not implemented: raises NotImplementedError (the work is never silently dropped)."""
        _ = (run, run_id, scenario_id, inputs)
        raise _not_implemented(
            "execute_boundary",
            "workers run their own programs; boundary execution through the supervisor does not exist",
        )

    def configure_routing_cache(self, settings: Dict[str, object]) -> None:
        """Accepts ``{}`` (no routing cache asked for); any setting raises NotImplementedError.

        The routing cache served boundary execution, which this class does not have."""
        if not isinstance(settings, Mapping):
            raise ValueError("runtime.platform.routing_cache must be a mapping")
        if settings:
            raise _not_implemented("configure_routing_cache", "there is no routing cache (no boundary execution)")

    def route_cache_snapshot(self) -> Dict[str, object]:
        """Not implemented: raises NotImplementedError."""
        raise _not_implemented("route_cache_snapshot", "there is no routing cache (no boundary execution)")

    def load_child_bootstrap_bundle(self, bundle: object) -> None:
        """Kept, as in the original; only boundary execution would use it."""
        self._child_bundle = bundle

    # -- Part 2 ----------------------------------------------------------------------------

    def start_work(self, group_names: List[str]) -> None:
        self._sup.start_work(_group_names(group_names))

    def configure_lifecycle_logging(self, settings: Dict[str, object]) -> None:
        """The original's settings: checked as the original did (ValueError).

        With sinks from :meth:`lifecycle_log_sinks`, records go to them at the configured
        level and the library's own logging is off; otherwise the settings are translated
        by :func:`library_logging` for the library."""
        checked = _original_logging_settings(settings)
        sinks = self.lifecycle_log_sinks(dict(settings) if isinstance(settings, Mapping) else {})
        if sinks is None:
            with self._events_lock:
                self._log_sinks = None
            self._sup.configure_lifecycle_logging(library_logging(settings if isinstance(settings, Mapping) else {}))
            return
        try:
            self._sup.configure_lifecycle_logging({"lifecycle_events": {"enabled": False}, "exporters": []})
        except NotImplementedError:  # a library without Part 2 logs nothing itself
            pass
        with self._events_lock:
            self._pump()  # earlier events were logged (or not) under the earlier settings
            self._log_sinks = list(sinks)
            self._log_enabled = checked["enabled"]
            self._log_level = checked["level"]


class LocalBootstrapSupervisor:
    """In-process fallback with the methods of :class:`MultiprocessBootstrapSupervisor`.

    It runs nothing: it records groups, workers and lifecycle events in the library's
    shapes, so a host can run without the native library. Workers are the calling
    process (``pid`` is ``os.getpid()``); ``wait_ready(t)`` makes them ready when ``t >
    0`` (false for ``t <= 0``, as in the library); stops always succeed (graceful:
    ``exit_code`` 0; forced: ``signal`` 9).
    """

    CONTROL_CHANNEL = "in_process"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: Dict[str, Dict[str, Any]] = {}
        self._workers: Dict[str, List[Dict[str, Any]]] = {}
        self._events: List[Dict[str, Any]] = []
        self._seq = 0
        self._lifecycle_logging: Dict[str, Any] = {}

    def close(self) -> None:
        with self._lock:
            for group in list(self._workers):
                self._terminate_locked(group, "forced")

    def __enter__(self) -> "LocalBootstrapSupervisor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _emit_locked(self, kind: str, **fields: Any) -> None:
        self._seq += 1
        self._events.append({"seq": self._seq, "ts_ms": int(time.time() * 1000), "kind": kind, **fields})

    def configure_process_groups(self, groups: List[Dict[str, object]]) -> None:
        new: Dict[str, Dict[str, Any]] = {}
        for index, group in enumerate(groups):
            checked = _validated_group(group, f"groups[{index}]")
            _check_unique(new, checked["name"], index)
            unknown = [k for k in checked if k not in LIBRARY_GROUP_KEYS | ORIGINAL_GROUP_KEYS]
            if unknown:  # as the library would
                raise ValueError(f"groups[{index}].{unknown[0]}: unknown field `{unknown[0]}`")
            new[checked["name"]] = {k: v for k, v in checked.items() if k in LIBRARY_GROUP_KEYS}
        with self._lock:
            self._groups = new

    def start_groups(self, group_names: List[str]) -> None:
        names = _group_names(group_names)
        with self._lock:
            worker_count = 0
            for name in names:
                if not name:
                    raise ValueError("group names must be non-empty")
                self._terminate_locked(name, "forced")
                group = self._groups.get(name, {"name": name})
                fallback = group.get("control_channel") == "off"
                now_ms = int(time.time() * 1000)
                workers = []
                for index in range(1, int(group.get("workers", 1)) + 1):
                    worker = {
                        "worker_id": f"{name}#{index}",
                        "pid": os.getpid(),
                        "os_pid": os.getpid(),
                        "alive": True,
                        "ready": False,
                        "state": "starting",
                        "pgid": os.getpgrp(),
                        "exit_code": None,
                        "signal": None,
                        "has_stop_event": not fallback,
                        "has_control_channel": False,
                        "stop_strategy": "terminate_fallback" if fallback else "event",
                        "control_channel": "unavailable" if fallback else self.CONTROL_CHANNEL,
                        "started_at_ms": now_ms,
                    }
                    workers.append(worker)
                    self._emit_locked(
                        "worker_spawned",
                        group_name=name,
                        worker_id=worker["worker_id"],
                        pid=worker["pid"],
                        stop_strategy=worker["stop_strategy"],
                        control_channel=worker["control_channel"],
                    )
                self._workers[name] = workers
                worker_count += len(workers)
            self._emit_locked("supervisor_start_groups", group_count=len(names), worker_count=worker_count)

    def wait_ready(self, timeout_seconds: float) -> bool:
        if math.isnan(timeout_seconds) or timeout_seconds <= 0:
            return False
        with self._lock:
            workers = [(g, w) for g, ws in self._workers.items() for w in ws]
            if not workers:
                return False
            for group, worker in workers:
                if not worker["ready"]:
                    worker["ready"], worker["state"] = True, "ready"
                    self._emit_locked("worker_ready", group_name=group, worker_id=worker["worker_id"], pid=worker["pid"])
            return True

    def stop_groups(self, *, graceful_timeout_seconds: float, drain_inflight: bool) -> None:
        if math.isnan(graceful_timeout_seconds) or graceful_timeout_seconds < 0:
            raise ValueError(f"graceful_timeout_seconds must be >= 0, got {graceful_timeout_seconds!r}")
        _ = drain_inflight
        with self._lock:
            for group in list(self._workers):
                self._terminate_locked(group, "graceful")

    def force_terminate_groups(self, group_names: List[str]) -> None:
        names = _group_names(group_names)
        with self._lock:
            for name in names:
                self._terminate_locked(name, "forced")

    def _terminate_locked(self, group: str, mode: str) -> None:
        for worker in self._workers.pop(group, []):
            fields = dict(group_name=group, worker_id=worker["worker_id"], pid=worker["pid"], mode=mode)
            self._emit_locked("worker_stopping", **fields)
            if mode == "graceful":
                self._emit_locked("worker_stopped", exit_code=0, signal=None, **fields)
            else:
                self._emit_locked("worker_stopped", exit_code=None, signal=9, **fields)

    def snapshot(self) -> Dict[str, List[Dict[str, object]]]:
        with self._lock:
            return {group: [dict(w) for w in workers] for group, workers in self._workers.items() if workers}

    def lifecycle_events(self) -> List[Dict[str, object]]:
        with self._lock:
            return [dict(event) for event in self._events]

    def start_work(self, group_names: List[str]) -> None:
        names = _group_names(group_names)
        with self._lock:
            missing = sorted(
                w["worker_id"] for name in names for w in self._workers.get(name, []) if not w["ready"]
            )
            if missing:
                raise RuntimeError(f"workers not ready: {', '.join(missing)}")
            workers = [w for name in names for w in self._workers.get(name, [])]
            self._emit_locked("supervisor_start_work", group_count=len(names), worker_count=len(workers))

    def configure_lifecycle_logging(self, settings: Dict[str, object]) -> None:
        if not isinstance(settings, Mapping):
            raise ValueError("lifecycle logging settings must be a mapping")
        with self._lock:
            self._lifecycle_logging = dict(settings)


BootstrapSupervisor = Union[MultiprocessBootstrapSupervisor, LocalBootstrapSupervisor]


def discover_supervisors() -> List[Type[BootstrapSupervisor]]:
    """The supervisor classes in the original's discovery order: multiprocess, then local.

    Classes, not instances: constructing the multiprocess one loads the native library
    and raises OSError when it is missing. :func:`create_supervisor` applies the rule
    "the first one that can be constructed wins".
    """
    return [MultiprocessBootstrapSupervisor, LocalBootstrapSupervisor]


def create_supervisor() -> BootstrapSupervisor:
    """An instance of the first class from :func:`discover_supervisors` that can be constructed.

    The multiprocess supervisor when libmpsupervisor loads, the local one otherwise.
    """
    errors: List[str] = []
    for cls in discover_supervisors():
        try:
            return cls()
        except OSError as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise RuntimeError("no bootstrap supervisor could be constructed: " + "; ".join(errors))
