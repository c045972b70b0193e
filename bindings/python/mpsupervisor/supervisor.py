"""`Supervisor`: one library handle, one method per C call."""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import threading
import time
import weakref
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _native
from ._errors import InvalidHandleError, Result, error_for
from ._native import NativeLibrary, mpsup_supervisor
from .types import Status, WorkerSnapshot

JsonText = Union[str, bytes]

# Blocking calls wait in slices this long, so that Ctrl-C (KeyboardInterrupt, which Python
# raises only between two calls into C) is seen within this time.
INTERRUPT_SLICE_SECONDS = 0.05


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
        self._own(lib, out)

    @classmethod
    def adopt(cls, fd: int, library: Optional[NativeLibrary] = None) -> "Supervisor":
        """In the host's new image: the supervisor ``handover_prepare`` wrote into memfd ``fd``
        (by convention ``int(os.environ["MPSUP_HANDOVER_FD"])``), with the same workers.

        The memfd is closed; exits during the ``exec`` are handled now; undrained events are
        still there, followed by ``supervisor_adopted``. A state of a library version whose
        format this one cannot read raises ``InvalidArgumentError`` naming both versions, and
        its workers are killed."""
        lib = library if library is not None else _native.load_library()
        out = mpsup_supervisor()
        lib.check(lib.optional("mpsup_supervisor_adopt")(int(fd), ctypes.byref(out)))
        sup = cls.__new__(cls)
        sup._own(lib, out)
        return sup

    def _own(self, lib: NativeLibrary, out: mpsup_supervisor) -> None:
        self._lib = lib
        self._id: int = out.id
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _free_handle, lib, out.id, self._pid)
        # Wakers of the `events()` generators waiting on the event fd; close() calls them
        # before the handle (and with it the fd) goes away.
        self._close_wakers_lock = threading.Lock()
        self._close_wakers: Dict[int, Callable[[], None]] = {}
        self._closing = False

    # -- lifetime ----------------------------------------------------------------------

    @property
    def library(self) -> NativeLibrary:
        return self._lib

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Free the handle (force-terminating every worker). Safe to call twice.

        In a forked child it only forgets the handle: the workers are the parent's.
        An ``events()`` generator waiting for events ends."""
        with self._close_wakers_lock:
            self._closing = True
            wakers = list(self._close_wakers.values())
            self._close_wakers.clear()
        for wake in wakers:
            wake()
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
        """Whether every worker of every started group is ready within ``timeout`` seconds.

        False at once for ``timeout <= 0`` or NaN, with no workers, or when a worker has
        failed. It waits in slices of at most 50 ms (each a ``mpsup_wait_ready`` call), so
        Ctrl-C raises KeyboardInterrupt promptly; a slice that returns False before its own
        time is up is the library's final answer (no workers, a worker failed)."""
        timeout = float(timeout)
        handle = self._handle()
        if math.isnan(timeout) or timeout <= 0:
            return self._wait_ready_once(handle, timeout)
        for slice_seconds in _slices(timeout):
            started = time.monotonic()
            if self._wait_ready_once(handle, slice_seconds):
                return True
            if _answered_early(started, slice_seconds):
                return False
        return False

    def _wait_ready_once(self, handle: mpsup_supervisor, timeout: float) -> bool:
        ready = ctypes.c_bool(False)
        self._lib.check(self._lib.mpsup_wait_ready(handle, timeout, ctypes.byref(ready)))
        return bool(ready.value)

    def stop_groups(self, graceful_timeout_seconds: float, drain_inflight: bool) -> None:
        """Stop every worker gracefully within ``graceful_timeout_seconds`` of the call.

        Raises TimeoutError (naming the first worker still alive) at the deadline. The
        library call runs in a helper thread while this one waits in 50 ms slices, so
        Ctrl-C raises KeyboardInterrupt promptly; the stop then goes on in that thread
        until it ends or its deadline (``close()`` waits for it: the library frees a
        handle once the calls in progress on it have returned)."""
        graceful = float(graceful_timeout_seconds)
        drain = bool(drain_inflight)
        handle = self._handle()
        call = _BackgroundCall(lambda: self._lib.check(self._lib.mpsup_stop_groups(handle, graceful, drain)))
        call.join_interruptibly()

    async def wait_ready_async(self, timeout: float) -> bool:
        """``wait_ready`` for asyncio: the slices run in the loop's default executor, so
        the loop keeps running, and cancelling the task ends the wait within 50 ms."""
        timeout = float(timeout)
        handle = self._handle()
        if math.isnan(timeout) or timeout <= 0:
            return self._wait_ready_once(handle, timeout)
        loop = asyncio.get_running_loop()
        for slice_seconds in _slices(timeout):
            started = time.monotonic()
            if await loop.run_in_executor(None, self._wait_ready_once, handle, slice_seconds):
                return True
            if _answered_early(started, slice_seconds):
                return False
        return False

    async def stop_groups_async(self, graceful_timeout_seconds: float, drain_inflight: bool) -> None:
        """``stop_groups`` for asyncio: the call runs in the loop's default executor.

        Cancelling the awaiting task does not cancel the stop, which goes on until it ends
        or its deadline (as after Ctrl-C in ``stop_groups``)."""
        graceful = float(graceful_timeout_seconds)
        drain = bool(drain_inflight)
        handle = self._handle()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, lambda: self._lib.check(self._lib.mpsup_stop_groups(handle, graceful, drain))
        )

    async def events(self) -> AsyncIterator[Dict[str, Any]]:
        """Every event as it comes, oldest first, for ``async for``.

        Waits on the event fd through the running loop (``loop.add_reader``), drains what
        is there and yields it one event at a time. It ends when the supervisor is closed
        (also from another thread) or when the task is cancelled. Events it drained are
        no longer returned by ``drain_events``: use one reader per supervisor."""
        loop = asyncio.get_running_loop()
        fd = self.event_fd()
        key = id(object())
        while True:
            try:
                batch = self.drain_events()
            except InvalidHandleError:
                return  # closed
            for event in batch:
                yield event
            if batch:
                continue
            woken: "asyncio.Future[None]" = loop.create_future()

            def wake(future: "asyncio.Future[None]" = woken) -> None:
                if not future.done():
                    future.set_result(None)

            def wake_on_close(future: "asyncio.Future[None]" = woken) -> None:
                # Called by close(), maybe from another thread: stop watching the fd,
                # which close() is about to free, before it goes.
                if _running_loop() is loop:
                    loop.remove_reader(fd)
                    wake(future)
                else:
                    loop.call_soon_threadsafe(wake, future)

            with self._close_wakers_lock:
                if self._closing:
                    return
                self._close_wakers[key] = wake_on_close
            loop.add_reader(fd, wake)
            try:
                await woken
            finally:
                with self._close_wakers_lock:
                    self._close_wakers.pop(key, None)
                loop.remove_reader(fd)
            if self._closing:
                return

    def force_terminate_groups(self, names: Iterable[str]) -> None:
        array, count = _names_array(names)
        self._lib.check(self._lib.mpsup_force_terminate_groups(self._handle(), array, count))

    def snapshot(self) -> Dict[str, List[WorkerSnapshot]]:
        """Group name to its workers (:class:`mpsupervisor.types.WorkerSnapshot`), in index order."""
        out = ctypes.c_void_p()
        self._lib.check(self._lib.mpsup_snapshot_json(self._handle(), ctypes.byref(out)))
        snapshot: Dict[str, List[WorkerSnapshot]] = json.loads(self._lib.take_string(out))
        return snapshot

    def status(self) -> Status:
        """Per group: target, running, ready, generation, rollout; and ``guarantees``, what holds on this
        host (``host_death``: ``"keeper"`` or ``"none"``; ``tree_kill``: ``"cgroup"`` or
        ``"process_group"``)."""
        out = ctypes.c_void_p()
        self._lib.check(self._lib.mpsup_status_json(self._handle(), ctypes.byref(out)))
        status: Status = json.loads(self._lib.take_string(out))
        return status

    def drain_events(self, max_events: int = 0) -> List[Dict[str, Any]]:
        """Remove and return up to ``max_events`` events (0 = all), oldest first.

        Each is one of the kinds of :data:`mpsupervisor.types.Event` (``cast`` it to read it
        typed; plain dicts here, so that any key can be read without narrowing the kind)."""
        if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0:
            raise ValueError(f"max_events must be an int >= 0, not {max_events!r}")
        out = ctypes.c_void_p()
        self._lib.check(self._lib.mpsup_drain_events_json(self._handle(), max_events, ctypes.byref(out)))
        events: List[Dict[str, Any]] = json.loads(self._lib.take_string(out))
        return events

    def handover_prepare(self) -> int:
        """Prepare handing every worker to the next image of this process; returns the number of
        the memfd that holds the state. Then ``os.execv`` the new program with that number in
        ``MPSUP_HANDOVER_FD`` (``os.execv`` keeps the environment; the memfd and the library's
        descriptors stay open across it) and call ``Supervisor.adopt`` there. Until
        ``handover_abort``, every other call raises ``InvalidHandleError``. Changes in progress
        (rollouts, stops, reloads, replacements, groups waiting for dependencies) cross and go on
        in the next image. Raises ``NotReadyError`` only when a spawn has not arrived within 2 s
        or a control line is still on its way (try again). Everything else crosses too: captured
        output, listen sockets (``reuse_port`` too), the workers' cgroups, and the event fd at
        the same number."""
        fd = ctypes.c_int(-1)
        func = self._lib.optional("mpsup_handover_prepare")
        self._lib.check(func(self._handle(), ctypes.byref(fd)))
        return fd.value

    def handover_abort(self) -> None:
        """Undo ``handover_prepare`` when the ``exec`` failed: the handle works on as before."""
        self._lib.check(self._lib.optional("mpsup_handover_abort")(self._handle()))

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

    # -- Part 4: the engine (the library keeps each started group at its target) --------

    def scale_group(self, name: str, workers: int) -> None:
        """Set the worker count of a started group (0 to 4096); returns at once."""
        if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers < 2**32:
            raise ValueError(f"workers must be an int from 0 to 4096, not {workers!r}")
        if not isinstance(name, str) or "\0" in name:
            raise ValueError(f"name must be a str without NUL, not {name!r}")
        func = self._lib.optional("mpsup_scale_group")
        self._lib.check(func(self._handle(), name.encode("utf-8"), workers))

    def stop_named_groups(
        self, names: Iterable[str], graceful_timeout_seconds: float, drain_inflight: bool
    ) -> None:
        """``stop_groups`` for the named groups only: the others keep running with their
        sockets open; the named ones are stopped (their sockets closed) and can be started
        again. Raises TimeoutError (naming the first worker still alive) at the deadline. Like
        ``stop_groups``, the call runs in a helper thread so that Ctrl-C is prompt."""
        func = self._lib.optional("mpsup_stop_named_groups")
        array, count = _names_array(names)
        graceful = float(graceful_timeout_seconds)
        drain = bool(drain_inflight)
        handle = self._handle()
        call = _BackgroundCall(lambda: self._lib.check(func(handle, array, count, graceful, drain)))
        call.join_interruptibly()

    def signal_group(self, name: str, signal: int) -> None:
        """Send ``signal`` (a number, such as ``signal.SIGUSR1``) to every live worker of the
        started group ``name``, to its process group or to it alone as ``kill_mode`` says."""
        if not isinstance(signal, int) or isinstance(signal, bool) or not -(2**31) <= signal < 2**31:
            raise ValueError(f"signal must be an int, not {signal!r}")
        if not isinstance(name, str) or "\0" in name:
            raise ValueError(f"name must be a str without NUL, not {name!r}")
        func = self._lib.optional("mpsup_signal_group")
        self._lib.check(func(self._handle(), name.encode("utf-8"), int(signal)))

    def reload_groups(self, names: Iterable[str]) -> None:
        """Send each worker of the named started groups its ``reload_signal``; returns at once.
        An sd_notify worker is ``reloading`` until its ``READY=1`` after ``RELOADING=1``, so a
        :meth:`wait_ready` after this waits for it."""
        func = self._lib.optional("mpsup_reload_groups")
        array, count = _names_array(names)
        self._lib.check(func(self._handle(), array, count))

    def replace_worker(self, worker_id: str) -> None:
        """Replace one worker (``"<group>#<index>"``) as one slot of a rolling restart: a new
        one first, the old one stopped once it is ready (``worker_recycled``, reason
        ``"requested"``); returns at once."""
        if not isinstance(worker_id, str) or "\0" in worker_id:
            raise ValueError(f"worker_id must be a str without NUL, not {worker_id!r}")
        func = self._lib.optional("mpsup_replace_worker")
        self._lib.check(func(self._handle(), worker_id.encode("utf-8")))

    def restart_groups(self, names: Iterable[str], options: Optional[Mapping[str, Any]] = None) -> None:
        """Roll the named started groups out to their current configuration, slot by slot
        (``max_surge``, ``max_unavailable``, ``ready_timeout_ms``); returns at once. Wait with
        :meth:`wait_ready`, which waits for rollouts and answers False when one failed."""
        func = self._lib.optional("mpsup_restart_groups")
        array, count = _names_array(names)
        data = None if options is None else _json_arg(dict(options))
        self._lib.check(func(self._handle(), array, count, data))


def _slices(timeout: float) -> Iterator[float]:
    """The lengths of the ``mpsup_wait_ready`` calls that make up a wait of ``timeout``
    seconds: at most INTERRUPT_SLICE_SECONDS each, so Ctrl-C and cancellation get through."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        yield min(remaining, INTERRUPT_SLICE_SECONDS)


def _answered_early(started: float, slice_seconds: float) -> bool:
    """A slice that said False well before its time did not wait: that is the library's
    final answer (no workers, or one has failed)."""
    return time.monotonic() - started < slice_seconds / 2


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _BackgroundCall:
    """A blocking library call in a helper thread, waited for in short slices.

    The check of the result runs in the helper thread too (the library's last-error
    message is thread-local); its exception is raised again in the waiting thread."""

    def __init__(self, call: Callable[[], None]) -> None:
        self._call = call
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="mpsupervisor-call", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc

    def join_interruptibly(self) -> None:
        while self._thread.is_alive():
            self._thread.join(INTERRUPT_SLICE_SECONDS)
        if self._error is not None:
            error, self._error = self._error, None
            raise error


SCHEMA_NAMES = ("groups", "restart-options", "logging", "snapshot", "status", "events")


def schema_json(which: str) -> str:
    """``mpsup_schema_json``: the library's JSON Schema (draft 2020-12) named ``which``, as text.

    ``"groups"`` (what ``configure_process_groups`` takes), ``"restart-options"``,
    ``"logging"``, ``"snapshot"``, ``"status"`` or ``"events"``; another name raises
    ValueError with the library's message, which names the known ones."""
    if not isinstance(which, str) or "\0" in which:
        raise ValueError(f"which must be a str without NUL, not {which!r}")
    lib = _native.load_library()
    func = lib.optional("mpsup_schema_json")
    out = ctypes.c_void_p()
    lib.check(func(which.encode("utf-8"), ctypes.byref(out)))
    return lib.take_string(out)


def schema(which: str) -> Dict[str, Any]:
    """:func:`schema_json`, parsed."""
    parsed: Dict[str, Any] = json.loads(schema_json(which))
    return parsed


def version() -> str:
    """``mpsup_version()`` of the loaded library."""
    return _native.load_library().version()
