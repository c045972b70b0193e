"""Python bindings for libmpsupervisor, through ctypes (``pip install`` bundles the library).

- :class:`Supervisor`: one library handle, a method per C call.
- :class:`MultiprocessBootstrapSupervisor`: drop-in for stream_kernel's class of that name.
- :class:`LocalBootstrapSupervisor`: in-process fallback with the same methods.
- :func:`discover_supervisors` / :func:`create_supervisor`: multiprocess first, local second.
- :mod:`mpsupervisor.types`: the library's JSON shapes as ``TypedDict``s (``Group``,
  ``WorkerSnapshot``, ``Status``, one per event kind, ...); :func:`schema` returns the JSON
  Schemas they follow.
- :mod:`mpsupervisor.worker`: the worker side of the control protocol (import it yourself).

The native library is loaded on first use, from ``MPSUPERVISOR_LIBRARY``, else the one
bundled in this package, else the system path (see :mod:`mpsupervisor._native`).
Blocking calls give way to Ctrl-C; ``Supervisor`` also has ``wait_ready_async``,
``stop_groups_async`` and ``events()`` for asyncio.
"""

from ._errors import (
    InvalidArgumentError,
    InvalidConfigError,
    InvalidHandleError,
    MpsupError,
    NotReadyError,
    PanicError,
    Result,
    SpawnError,
    SupervisorOSError,
    SupervisorTimeoutError,
    UnknownGroupError,
    UnknownResultError,
    UnsupportedError,
)
from .bootstrap import (
    LocalBootstrapSupervisor,
    MultiprocessBootstrapSupervisor,
    create_supervisor,
    discover_supervisors,
)
from . import types
from .supervisor import SCHEMA_NAMES, Supervisor, schema, schema_json, version
from .types import Event, Group, LoggingSettings, RestartOptions, Status, WorkerSnapshot

__version__ = "0.1.0"

__all__ = [
    "Supervisor",
    "MultiprocessBootstrapSupervisor",
    "LocalBootstrapSupervisor",
    "discover_supervisors",
    "create_supervisor",
    "version",
    "schema",
    "schema_json",
    "SCHEMA_NAMES",
    "types",
    "Group",
    "RestartOptions",
    "LoggingSettings",
    "WorkerSnapshot",
    "Status",
    "Event",
    "Result",
    "MpsupError",
    "InvalidHandleError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "UnknownGroupError",
    "SpawnError",
    "SupervisorTimeoutError",
    "SupervisorOSError",
    "PanicError",
    "NotReadyError",
    "UnknownResultError",
    "UnsupportedError",
]
