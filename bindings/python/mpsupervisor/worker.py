"""The worker side of the control protocol, for Python workers; pure Python.

A worker spawned by libmpsupervisor with a control channel finds its end of a
``socketpair`` in the descriptor named by ``MPSUP_CONTROL_FD``. The protocol is ASCII
lines ending in ``\\n``: the worker sends ``READY`` and ``HEARTBEAT``; the supervisor
sends ``BOOTSTRAP <json>`` (first, when the group has ``bootstrap``), ``START`` (groups
with ``start_gate``), then ``STOP DRAIN`` or ``STOP NOW``. End of file means the
supervisor is gone: the worker should exit.

The module functions use the channel from the environment. Without one (the group has
``"control_channel": "off"``, or it could not be made), ``notify_ready()`` and
``heartbeat()`` return False, ``wait_start()`` returns True at once (there is no gate),
``bootstrap_payload()`` returns None and ``wait_stop()`` just waits out its timeout: the
supervisor stops such a worker with its ``stop_signal``.

The library sets ``MPSUP_BOOTSTRAP=1`` when the group has ``bootstrap`` and
``MPSUP_START_GATE=1`` when it has ``start_gate``; without them the module functions
``bootstrap_payload()`` and ``wait_start()`` return at once (None, True).

Timeouts are in seconds; None or a negative value means no limit (as in the C helpers).

``python -m mpsupervisor.worker`` is the worker that ``MultiprocessBootstrapSupervisor``
runs for groups without ``argv``: it reads the bootstrap line when ``MPSUP_BOOTSTRAP=1``,
says ``READY``, sends ``HEARTBEAT`` every ``MPSUPERVISOR_WORKER_HEARTBEAT_MS`` when that
is set, and exits 0 on ``STOP`` or end of file. With no control channel it waits until a
signal ends it.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import threading
import time
from typing import Any, Callable, Optional, Tuple

CONTROL_FD_ENV = "MPSUP_CONTROL_FD"
GROUP_ENV = "MPSUP_GROUP"
WORKER_ID_ENV = "MPSUP_WORKER_ID"
BOOTSTRAP_ENV = "MPSUP_BOOTSTRAP"
START_GATE_ENV = "MPSUP_START_GATE"
# Set by MultiprocessBootstrapSupervisor for the bundled worker only.
HEARTBEAT_MS_ENV = "MPSUPERVISOR_WORKER_HEARTBEAT_MS"

__all__ = [
    "ControlChannel",
    "control_channel",
    "notify_ready",
    "heartbeat",
    "wait_stop",
    "wait_start",
    "bootstrap_payload",
    "worker_id",
    "group_name",
    "main",
]


class ControlChannel:
    """One end of the control socket, with a line buffer. Thread-safe.

    Every line read is recorded (bootstrap payload, ``START``, the first ``STOP``), so
    the ``wait_*`` methods can be called in any order without losing a line. Unknown
    lines are ignored, as the protocol says. Lines from the supervisor have no length
    limit (a ``BOOTSTRAP`` line can be large).

    Any thread may wait: one reads the socket with the lock released while the others
    wait on a condition, each until its own deadline.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._cond = threading.Condition()
        self._reading = False
        self._buffer = bytearray()
        self._lines_seen = 0
        self._bootstrap: Any = None
        self._has_bootstrap = False
        self._started = False
        self._stop: Optional[Tuple[bool, bool]] = None
        self._eof = False

    # -- sending -----------------------------------------------------------------------

    def send(self, line: str) -> bool:
        """Write one line; False when the supervisor is gone."""
        data = (line + "\n").encode("ascii")
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            return False
        return True

    def notify_ready(self) -> bool:
        return self.send("READY")

    def heartbeat(self) -> bool:
        return self.send("HEARTBEAT")

    # -- receiving ---------------------------------------------------------------------

    @property
    def eof(self) -> bool:
        return self._eof

    def wait_stop(self, timeout: Optional[float] = None) -> Tuple[bool, bool]:
        """``(stop, drain)``: ``(True, True)`` for ``STOP DRAIN``, ``(True, False)`` for
        ``STOP NOW`` or end of file, ``(False, False)`` when ``timeout`` passed first."""
        self._wait(lambda: self._stop is not None or self._eof, timeout)
        if self._stop is not None:
            return self._stop
        return (True, False) if self._eof else (False, False)

    def wait_start(self, timeout: Optional[float] = None) -> bool:
        """True once ``START`` arrived; False on timeout, ``STOP`` or end of file."""
        self._wait(lambda: self._started or self._stop is not None or self._eof, timeout)
        return self._started

    def bootstrap_payload(self, timeout: Optional[float] = None) -> Any:
        """The value of the ``BOOTSTRAP <json>`` line, or None.

        The bootstrap line is the first line the supervisor sends, so this waits for the
        first line (up to ``timeout``; None waits for ever) and returns None when that line
        is something else. Only call it with no timeout when the group has ``bootstrap``.
        """
        self._wait(lambda: self._lines_seen > 0 or self._eof, timeout)
        return self._bootstrap

    @property
    def has_bootstrap(self) -> bool:
        return self._has_bootstrap

    def _wait(self, done: Callable[[], bool], timeout: Optional[float]) -> None:
        """Until ``done()``, end of file or ``timeout`` (None or negative: no limit)."""
        if timeout is not None and math.isnan(timeout):
            raise ValueError("timeout is NaN")
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with self._cond:
            while not done() and not self._eof:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if self._reading:  # another thread reads; it wakes us when something came
                    if left == 0:
                        return
                    self._cond.wait(left)
                    continue
                self._reading = True
                self._cond.release()
                try:
                    data = _read_once(self.fd, left)
                finally:
                    self._cond.acquire()
                    self._reading = False
                    self._cond.notify_all()
                if data is None:
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                elif not data:
                    self._eof = True
                else:
                    self._take_lines(data)

    def _take_lines(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._handle_line(line.decode("utf-8", "replace").rstrip("\r"))

    def _handle_line(self, line: str) -> None:
        first = self._lines_seen == 0
        self._lines_seen += 1
        if first and (line == "BOOTSTRAP" or line.startswith("BOOTSTRAP ")):
            text = line[len("BOOTSTRAP"):].strip()
            self._bootstrap = json.loads(text) if text else None
            self._has_bootstrap = True
        elif line == "START":
            self._started = True
        elif line in ("STOP DRAIN", "STOP NOW") and self._stop is None:
            self._stop = (True, line == "STOP DRAIN")


def _read_once(fd: int, timeout: Optional[float]) -> Optional[bytes]:
    """What is there once ``fd`` is readable (b"" at end of file); None when ``timeout`` passed."""
    wait_ms = None if timeout is None else min(math.ceil(timeout * 1000), 2**31 - 1)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(wait_ms):
        return None
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


_CHANNEL: Optional[ControlChannel] = None
_CHANNEL_LOADED = False
_CHANNEL_LOCK = threading.Lock()


def control_channel() -> Optional[ControlChannel]:
    """The channel named by ``MPSUP_CONTROL_FD``, or None when there is none."""
    global _CHANNEL, _CHANNEL_LOADED
    with _CHANNEL_LOCK:
        if not _CHANNEL_LOADED:
            raw = os.environ.get(CONTROL_FD_ENV, "").strip()
            if raw:
                try:
                    fd = int(raw)
                    os.fstat(fd)
                except (ValueError, OSError):
                    fd = -1
                if fd >= 0:
                    _CHANNEL = ControlChannel(fd)
            _CHANNEL_LOADED = True
        return _CHANNEL


def worker_id() -> Optional[str]:
    """``MPSUP_WORKER_ID`` (``"<group>#<index>"``), or None outside a supervised worker."""
    return os.environ.get(WORKER_ID_ENV)


def group_name() -> Optional[str]:
    return os.environ.get(GROUP_ENV)


def notify_ready() -> bool:
    """Send ``READY``; False without a channel or when the supervisor is gone."""
    channel = control_channel()
    return channel.notify_ready() if channel is not None else False


def heartbeat() -> bool:
    """Send ``HEARTBEAT``; False without a channel or when the supervisor is gone."""
    channel = control_channel()
    return channel.heartbeat() if channel is not None else False


def wait_stop(timeout: Optional[float] = None) -> Tuple[bool, bool]:
    """``(stop, drain)``; see :meth:`ControlChannel.wait_stop`.

    Without a channel, sleeps for ``timeout`` (for ever when None or negative) and
    returns ``(False, False)``: the stop then comes as a signal.
    """
    channel = control_channel()
    if channel is not None:
        return channel.wait_stop(timeout)
    if timeout is None or timeout < 0:
        while True:
            signal.pause()
    threading.Event().wait(timeout)
    return (False, False)


def wait_start(timeout: Optional[float] = None) -> bool:
    """True once ``START`` arrived; True at once when the group has no ``start_gate``
    (``MPSUP_START_GATE`` is not ``1``) or there is no channel."""
    channel = control_channel()
    if channel is None or os.environ.get(START_GATE_ENV) != "1":
        return True
    return channel.wait_start(timeout)


def bootstrap_payload(timeout: Optional[float] = None) -> Any:
    """The ``BOOTSTRAP`` value; None at once when the group has no ``bootstrap``
    (``MPSUP_BOOTSTRAP`` is not ``1``) or there is no channel."""
    channel = control_channel()
    if channel is None or os.environ.get(BOOTSTRAP_ENV) != "1":
        return None
    return channel.bootstrap_payload(timeout)


def main() -> int:
    """The bundled worker (``python -m mpsupervisor.worker``)."""
    channel = control_channel()
    if channel is None:
        while True:  # stopped by the group's stop_signal (SIGTERM's default action)
            signal.pause()
    if os.environ.get(BOOTSTRAP_ENV) == "1":
        channel.bootstrap_payload()
    channel.notify_ready()
    interval_ms = int(os.environ.get(HEARTBEAT_MS_ENV, "0") or 0)
    interval = interval_ms / 1000.0 if interval_ms > 0 else None
    while True:
        stop, _drain = channel.wait_stop(interval)
        if stop:
            return 0
        channel.heartbeat()


if __name__ == "__main__":
    raise SystemExit(main())
