"""`Supervisor`: one library handle, one method per C call."""

from __future__ import annotations

import ctypes
import json
import os
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._errors import InvalidHandleError, Result, error_for
from ._native import NativeLibrary, mpsup_supervisor

JsonText = Union[str, bytes]


def _free_handle(lib: NativeLibrary, handle_id: int, owner_pid: int) -> Tuple[int, str]:
    if os.getpid() != owner_pid:  # a forked child: the workers are the parent's, leave them
        return Result.OK, ""
    result = lib.mpsup_supervisor_free(mpsup_supervisor(handle_id))
    return result, (lib.last_error_message() if result != Result.OK else "")


def group_names(names: Iterable[str]) -> List[str]:
    """``names`` as a list, checked: a list of str, not one str (which would iterate as letters)."""
    if isinstance(names, (str, bytes)):
        raise TypeError("names must be a list of group names, not a single string")
    checked = list(names)
    for name in checked:
        if not isinstance(name, str):
            raise TypeError(f"group names must be str, not {type(name).__name__}")
    return checked


def _names_array(names: Iterable[str]) -> Tuple[Any, int]:
    encoded: List[bytes] = []
    for name in group_names(names):
        raw = name.encode("utf-8")
        if b"\0" in raw:
            raise ValueError(f"group name {name!r} contains a NUL character")
        encoded.append(raw)
    return (ctypes.c_char_p * len(encoded))(*encoded), len(encoded)


def _json_arg(value: Any) -> bytes:
    """A JSON document for the library: str/bytes are passed as they are, anything else is dumped."""
    if isinstance(value, bytes):
        text = value
    elif isinstance(value, str):
        text = value.encode("utf-8")
    else:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if b"\0" in text:
        raise ValueError("JSON text contains a NUL character")
    return text


class Supervisor:
    """One ``mpsup_supervisor`` handle.

    Methods map one to one to the C calls (named without the ``mpsup_`` prefix) and raise
    the exceptions listed in ``mpsupervisor._errors`` when a call fails. All methods are
    thread-safe, as the library is; blocking calls (``wait_ready``, ``stop_groups``)
    release the GIL. ``close()`` frees the handle, which force-terminates and reaps every
    worker; it is safe to call twice, and runs at garbage collection or interpreter exit
    if it was not called. Any other call after ``close()`` raises ``InvalidHandleError``
    (a ``RuntimeError``).

    The handle belongs to the process that made it: in a child made by ``os.fork()`` every
    call raises ``InvalidHandleError`` and ``close()`` (or garbage collection) only forgets
    the handle, leaving the parent's workers alone.
    """

    def __init__(self, library: Optional[NativeLibrary] = None) -> None:
        lib = library if library is not None else _native.load_library()
        out = mpsup_supervisor()
        lib.check(lib.mpsup_supervisor_new(ctypes.byref(out)))
        self._lib = lib
        self._id: int = out.id
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _free_handle, lib, out.id, self._pid)

    # -- lifetime ----------------------------------------------------------------------

    @property
    def library(self) -> NativeLibrary:
        return self._lib

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Free the handle (force-terminating every worker). Safe to call twice.

        In a forked child it only forgets the handle: the workers are the parent's."""
        outcome = self._finalizer()  # None when already run
        if outcome is not None and outcome[0] != Result.OK:
            result, message = outcome
            raise error_for(result, message or self._lib.result_name(result))

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"id={self._id:#x}"
        return f"<mpsupervisor.Supervisor {state}>"

    def _handle(self) -> mpsup_supervisor:
        message = ""
        if not self._finalizer.alive:
            message = "supervisor is closed"
        elif os.getpid() != self._pid:
            message = "supervisor belongs to the parent process (this is a forked child)"
        if message:
            err = InvalidHandleError(message)
            err.result, err.message = int(Result.ERR_INVALID_HANDLE), message
            raise err
        return mpsup_supervisor(self._id)

    # -- the calls ---------------------------------------------------------------------

    def configure_process_groups(self, groups: Union[Sequence[Mapping[str, Any]], JsonText]) -> None:
        """Replace the group configuration (a list of group dicts, or the JSON text)."""
        if isinstance(groups, Mapping):  # not an array: let the library say so
            data = _json_arg(dict(groups))
        else:
            data = _json_arg(groups if isinstance(groups, (str, bytes, list, tuple)) else list(groups))
        self._lib.check(self._lib.mpsup_configure_process_groups(self._handle(), data))

    def start_groups(self, names: Iterable[str]) -> None:
        array, count = _names_array(names)
        self._lib.check(self._lib.mpsup_start_groups(self._handle(), array, count))

    def wait_ready(self, timeout: float) -> bool:
        ready = ctypes.c_bool(False)
        self._lib.check(self._lib.mpsup_wait_ready(self._handle(), float(timeout), ctypes.byref(ready)))
        return bool(ready.value)

    def stop_groups(self, graceful_timeout_seconds: float, drain_inflight: bool) -> None:
        self._lib.check(
            self._lib.mpsup_stop_groups(self._handle(), float(graceful_timeout_seconds), bool(drain_inflight))
        )

    def force_terminate_groups(self, names: Iterable[str]) -> None:
        array, count = _names_array(names)
        self._lib.check(self._lib.mpsup_force_terminate_groups(self._handle(), array, count))

    def snapshot(self) -> Dict[str, List[Dict[str, Any]]]:
        out = ctypes.c_void_p()
        self._lib.check(self._lib.mpsup_snapshot_json(self._handle(), ctypes.byref(out)))
        snapshot: Dict[str, List[Dict[str, Any]]] = json.loads(self._lib.take_string(out))
        return snapshot

    def drain_events(self, max_events: int = 0) -> List[Dict[str, Any]]:
        """Remove and return up to ``max_events`` events (0 = all), oldest first."""
        if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0:
            raise ValueError(f"max_events must be an int >= 0, not {max_events!r}")
        out = ctypes.c_void_p()
        self._lib.check(self._lib.mpsup_drain_events_json(self._handle(), max_events, ctypes.byref(out)))
        events: List[Dict[str, Any]] = json.loads(self._lib.take_string(out))
        return events

    def event_fd(self) -> int:
        """A descriptor readable while undrained events exist; owned by the supervisor (do not close it)."""
        fd = ctypes.c_int(-1)
        self._lib.check(self._lib.mpsup_event_fd(self._handle(), ctypes.byref(fd)))
        return fd.value

    # -- Part 2 (bound lazily: NotImplementedError against a Part-1-only library) -------

    def start_work(self, names: Iterable[str]) -> None:
        """Send ``START`` to every worker of the named groups (all or none)."""
        func = self._lib.optional("mpsup_start_work")
        array, count = _names_array(names)
        self._lib.check(func(self._handle(), array, count))

    def configure_lifecycle_logging(self, settings: Union[Mapping[str, Any], JsonText]) -> None:
        func = self._lib.optional("mpsup_configure_lifecycle_logging")
        data = _json_arg(settings if isinstance(settings, (str, bytes)) else dict(settings))
        self._lib.check(func(self._handle(), data))


def version() -> str:
    """``mpsup_version()`` of the loaded library."""
    return _native.load_library().version()
