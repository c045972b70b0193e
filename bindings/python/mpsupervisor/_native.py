"""ctypes declarations for libmpsupervisor, and the code that finds the library.

Where the library comes from, first match wins:

1. the path in the environment variable ``MPSUPERVISOR_LIBRARY`` (when it is set and
   cannot be loaded, that is an error: there is no silent fallback);
2. ``libmpsupervisor.so`` next to this file (``pip install`` builds it with cargo and puts
   it there: see ``setup.py``);
3. the system path (``ctypes.util.find_library("mpsupervisor")``, then
   ``dlopen("libmpsupervisor.so")``, which honours ``LD_LIBRARY_PATH``).

Every function of Part 1 of the contract is bound when the library loads; the Part 2
calls and the C worker helpers are bound on first use (:meth:`NativeLibrary.optional`),
so the package works against a library that has only Part 1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._errors import Result, error_for

LIBRARY_ENV = "MPSUPERVISOR_LIBRARY"
LIBRARY_FILE = "libmpsupervisor.so"


class mpsup_supervisor(ctypes.Structure):
    """``typedef struct mpsup_supervisor { uint64_t id; } mpsup_supervisor;`` (by value)."""

    _fields_ = [("id", ctypes.c_uint64)]


# `mpsup_result` is a C enum with values 0..9: 32 bits wide on every Linux ABI.
c_result = ctypes.c_uint32
c_names = ctypes.POINTER(ctypes.c_char_p)  # const char *const *
c_out_string = ctypes.POINTER(ctypes.c_void_p)  # char **, freed with mpsup_string_free

_Signature = Tuple[Any, List[Any]]

REQUIRED: Dict[str, _Signature] = {
    "mpsup_result_name": (ctypes.c_char_p, [ctypes.c_uint32]),
    "mpsup_last_error_message": (ctypes.c_char_p, []),
    "mpsup_version": (ctypes.c_char_p, []),
    "mpsup_supervisor_new": (c_result, [ctypes.POINTER(mpsup_supervisor)]),
    "mpsup_supervisor_free": (c_result, [mpsup_supervisor]),
    "mpsup_configure_process_groups": (c_result, [mpsup_supervisor, ctypes.c_char_p]),
    "mpsup_start_groups": (c_result, [mpsup_supervisor, c_names, ctypes.c_size_t]),
    "mpsup_wait_ready": (c_result, [mpsup_supervisor, ctypes.c_double, ctypes.POINTER(ctypes.c_bool)]),
    "mpsup_stop_groups": (c_result, [mpsup_supervisor, ctypes.c_double, ctypes.c_bool]),
    "mpsup_force_terminate_groups": (c_result, [mpsup_supervisor, c_names, ctypes.c_size_t]),
    "mpsup_snapshot_json": (c_result, [mpsup_supervisor, c_out_string]),
    "mpsup_status_json": (c_result, [mpsup_supervisor, c_out_string]),
    "mpsup_drain_events_json": (c_result, [mpsup_supervisor, ctypes.c_size_t, c_out_string]),
    "mpsup_event_fd": (c_result, [mpsup_supervisor, ctypes.POINTER(ctypes.c_int)]),
    "mpsup_string_free": (None, [ctypes.c_void_p]),
}

OPTIONAL: Dict[str, _Signature] = {
    # Part 2
    "mpsup_start_work": (c_result, [mpsup_supervisor, c_names, ctypes.c_size_t]),
    "mpsup_configure_lifecycle_logging": (c_result, [mpsup_supervisor, ctypes.c_char_p]),
    # Part 4: the engine (mpsup_status_json is required)
    "mpsup_scale_group": (c_result, [mpsup_supervisor, ctypes.c_char_p, ctypes.c_uint32]),
    "mpsup_restart_groups": (
        c_result,
        [mpsup_supervisor, c_names, ctypes.c_size_t, ctypes.c_char_p],
    ),
    # Part 7: one group at a time, recycling
    "mpsup_stop_named_groups": (
        c_result,
        [mpsup_supervisor, c_names, ctypes.c_size_t, ctypes.c_double, ctypes.c_bool],
    ),
    "mpsup_signal_group": (c_result, [mpsup_supervisor, ctypes.c_char_p, ctypes.c_int]),
    "mpsup_reload_groups": (c_result, [mpsup_supervisor, c_names, ctypes.c_size_t]),
    "mpsup_replace_worker": (c_result, [mpsup_supervisor, ctypes.c_char_p]),
    # Part 9: the host hands its workers to its next version
    "mpsup_handover_prepare": (c_result, [mpsup_supervisor, ctypes.POINTER(ctypes.c_int)]),
    "mpsup_handover_abort": (c_result, [mpsup_supervisor]),
    "mpsup_supervisor_adopt": (c_result, [ctypes.c_int, ctypes.POINTER(mpsup_supervisor)]),
    # Part 6: the JSON Schemas
    "mpsup_schema_json": (c_result, [ctypes.c_char_p, c_out_string]),
    # C worker helpers (Python workers use mpsupervisor.worker instead)
    "mpsup_worker_notify_ready": (c_result, []),
    "mpsup_worker_heartbeat": (c_result, []),
    "mpsup_worker_wait_start": (c_result, [ctypes.c_double, ctypes.POINTER(ctypes.c_bool)]),
    "mpsup_worker_bootstrap_json": (c_result, [ctypes.c_double, c_out_string]),
    "mpsup_worker_wait_stop": (
        c_result,
        [ctypes.c_double, ctypes.POINTER(ctypes.c_bool), ctypes.POINTER(ctypes.c_bool)],
    ),
}


class NativeLibrary:
    """One loaded ``libmpsupervisor`` with its functions declared."""

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self.cdll = cdll
        self.path = path
        self._optional: Dict[str, Callable[..., Any]] = {}
        self._optional_lock = threading.Lock()
        missing = [name for name in REQUIRED if not hasattr(cdll, name)]
        if missing:
            raise OSError(
                f"{path} is not a usable libmpsupervisor: missing {', '.join(missing)}"
            )
        for name, (restype, argtypes) in REQUIRED.items():
            _declare(getattr(cdll, name), restype, argtypes)
            setattr(self, name, getattr(cdll, name))

    # Typed attributes for the required functions (set in __init__).
    mpsup_result_name: Callable[[int], Optional[bytes]]
    mpsup_last_error_message: Callable[[], Optional[bytes]]
    mpsup_version: Callable[[], Optional[bytes]]
    mpsup_supervisor_new: Callable[..., int]
    mpsup_supervisor_free: Callable[..., int]
    mpsup_configure_process_groups: Callable[..., int]
    mpsup_start_groups: Callable[..., int]
    mpsup_wait_ready: Callable[..., int]
    mpsup_stop_groups: Callable[..., int]
    mpsup_force_terminate_groups: Callable[..., int]
    mpsup_snapshot_json: Callable[..., int]
    mpsup_status_json: Callable[..., int]
    mpsup_drain_events_json: Callable[..., int]
    mpsup_event_fd: Callable[..., int]
    mpsup_string_free: Callable[..., None]

    def has(self, name: str) -> bool:
        """Whether the library exports ``name``."""
        return hasattr(self.cdll, name)

    def optional(self, name: str) -> Callable[..., Any]:
        """An optional function, declared on first use.

        Raises NotImplementedError when this build of the library does not export it.
        """
        with self._optional_lock:
            bound = self._optional.get(name)
            if bound is not None:
                return bound
            if not self.has(name):
                raise NotImplementedError(
                    f"{name} is not exported by {self.path} (a library without Part 2 of "
                    f"the contract, or an older version); rebuild libmpsupervisor to use it"
                )
            restype, argtypes = OPTIONAL[name]
            func: Callable[..., Any] = getattr(self.cdll, name)
            _declare(func, restype, argtypes)
            self._optional[name] = func
            return func

    # -- helpers shared by the wrappers ------------------------------------------------

    def version(self) -> str:
        return (self.mpsup_version() or b"").decode("utf-8", "replace")

    def result_name(self, result: int) -> str:
        return (self.mpsup_result_name(result) or b"").decode("utf-8", "replace")

    def last_error_message(self) -> str:
        return (self.mpsup_last_error_message() or b"").decode("utf-8", "replace")

    def check(self, result: int) -> None:
        """Raise the exception for ``result`` unless it is ``MPSUP_OK``.

        Must run on the thread that made the failing call, right after it: the
        library's last-error message is thread-local.
        """
        if result == Result.OK:
            return
        message = self.last_error_message() or self.result_name(result)
        raise error_for(result, message)

    def take_string(self, ptr: ctypes.c_void_p) -> str:
        """The text of a string the library returned; frees it."""
        if not ptr.value:
            raise RuntimeError("libmpsupervisor returned MPSUP_OK with a NULL string")
        try:
            return ctypes.string_at(ptr.value).decode("utf-8")
        finally:
            self.mpsup_string_free(ptr)


def _declare(func: Any, restype: Any, argtypes: Sequence[Any]) -> None:
    func.restype = restype
    func.argtypes = list(argtypes)


def bundled_program(name: str) -> Optional[str]:
    """The path of a helper program bundled in this package (see ``setup.py``), or None."""
    path = Path(__file__).resolve().parent / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _candidates() -> List[str]:
    found = ctypes.util.find_library("mpsupervisor")
    names = [str(Path(__file__).resolve().parent / LIBRARY_FILE)]
    if found:
        names.append(found)
    names.append(LIBRARY_FILE)
    return names


def open_library(path: Optional[str] = None) -> NativeLibrary:
    """Load the library (not cached); ``path`` overrides the search."""
    if path is None:
        path = os.environ.get(LIBRARY_ENV) or None
        if path is not None:
            try:
                return NativeLibrary(ctypes.CDLL(path), path)
            except OSError as exc:
                raise OSError(f"{LIBRARY_ENV}={path} cannot be loaded: {exc}") from exc
    if path is not None:
        return NativeLibrary(ctypes.CDLL(path), path)
    errors = []
    for candidate in _candidates():
        if os.sep in candidate and not os.path.exists(candidate):
            errors.append(f"{candidate}: not found")
            continue
        try:
            return NativeLibrary(ctypes.CDLL(candidate), candidate)
        except OSError as exc:
            errors.append(str(exc))
    raise OSError(
        f"libmpsupervisor not found (set {LIBRARY_ENV} to its path); tried: " + "; ".join(errors)
    )


_LIBRARY: Optional[NativeLibrary] = None
_LIBRARY_LOCK = threading.Lock()


def load_library() -> NativeLibrary:
    """The process-wide library, loaded on first use (see the module doc for where from)."""
    global _LIBRARY
    with _LIBRARY_LOCK:
        if _LIBRARY is None:
            _LIBRARY = open_library()
        return _LIBRARY
