"""`mpsupervisor.worker` over a socketpair, in-process and as `python -m`; no library needed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from conftest import READY_TIMEOUT
from mpsupervisor import worker
from mpsupervisor.worker import ControlChannel

PACKAGE_PARENT = str(Path(worker.__file__).resolve().parents[1])


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, ControlChannel]]:
    supervisor_end, worker_end = socket.socketpair()
    try:
        yield supervisor_end, ControlChannel(worker_end.fileno())
    finally:
        supervisor_end.close()
        worker_end.close()


def test_notify_ready_and_heartbeat(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    assert channel.notify_ready() and channel.heartbeat()
    assert sup.recv(100) == b"READY\nHEARTBEAT\n"


def test_bootstrap_start_stop_in_order(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    sup.sendall(b'BOOTSTRAP {"a": [1, 2]}\nSTART\nSTOP DRAIN\n')
    assert channel.bootstrap_payload() == {"a": [1, 2]}
    assert channel.has_bootstrap
    assert channel.wait_start() is True
    assert channel.wait_stop() == (True, True)


def test_lines_are_kept_whatever_is_waited_for_first(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    sup.sendall(b"START\nSTOP NOW\n")
    assert channel.wait_stop() == (True, False)
    assert channel.wait_start() is True  # START was read on the way
    assert channel.bootstrap_payload(0) is None  # first line was not BOOTSTRAP


def test_split_lines_and_unknown_lines(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    result = []
    waiter = threading.Thread(target=lambda: result.append(channel.wait_stop()))
    waiter.start()
    for chunk in (b"HELLO\nST", b"OP DR", b"AIN\n"):
        sup.sendall(chunk)
    waiter.join()
    assert result == [(True, True)]


def test_timeouts(pair: Tuple[socket.socket, ControlChannel]) -> None:
    _sup, channel = pair
    assert channel.wait_stop(0.01) == (False, False)
    assert channel.wait_start(0) is False
    assert channel.bootstrap_payload(0) is None


def test_eof_means_stop(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    sup.close()
    assert channel.wait_stop() == (True, False)
    assert channel.eof
    assert channel.wait_start() is False
    assert channel.notify_ready() is False  # peer gone: EPIPE, not an exception


def test_a_bootstrap_line_has_no_length_limit(pair: Tuple[socket.socket, ControlChannel]) -> None:
    sup, channel = pair
    blob = "x" * 200_000  # more than the socket buffer: it arrives in many reads
    line = b'BOOTSTRAP {"blob": "%s"}\nSTART\n' % blob.encode()
    sender = threading.Thread(target=sup.sendall, args=(line,))
    sender.start()
    assert channel.bootstrap_payload() == {"blob": blob}
    sender.join()
    assert channel.wait_start() is True


class _Watched(ControlChannel):
    """Sets ``hello`` when the thread that reads the socket has taken a ``HELLO`` line."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.hello = threading.Event()

    def _handle_line(self, line: str) -> None:
        super()._handle_line(line)
        if line == "HELLO":
            self.hello.set()


def _in_thread(call: Callable[[], Any]) -> Tuple[List[Any], threading.Event]:
    result: List[Any] = []
    done = threading.Event()

    def run() -> None:
        result.append(call())
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return result, done


def test_a_blocked_waiter_does_not_hold_up_the_others() -> None:
    sup, worker_end = socket.socketpair()
    channel = _Watched(worker_end.fileno())
    stop, stopped = _in_thread(channel.wait_stop)
    try:
        sup.sendall(b"HELLO\n")
        assert channel.hello.wait(READY_TIMEOUT)  # wait_stop's thread has been reading
        # Another thread's timeout is its own, though wait_stop keeps waiting.
        timed_out, done = _in_thread(lambda: channel.wait_start(0.05))
        assert done.wait(READY_TIMEOUT) and timed_out == [False]
        # And a waiter wakes up for its own line.
        started, done = _in_thread(channel.wait_start)
        sup.sendall(b"START\n")
        assert done.wait(READY_TIMEOUT) and started == [True]
        assert not stopped.is_set()
        sup.sendall(b"STOP DRAIN\n")
        assert stopped.wait(READY_TIMEOUT) and stop == [(True, True)]
    finally:
        sup.close()  # end of file: no thread stays blocked
        stopped.wait(READY_TIMEOUT)
        worker_end.close()


def test_module_functions_without_a_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(worker.CONTROL_FD_ENV, raising=False)
    monkeypatch.setattr(worker, "_CHANNEL", None)
    monkeypatch.setattr(worker, "_CHANNEL_LOADED", False)
    assert worker.control_channel() is None
    assert worker.notify_ready() is False
    assert worker.heartbeat() is False
    assert worker.wait_start() is True
    assert worker.bootstrap_payload() is None
    assert worker.wait_stop(0) == (False, False)


def _child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@pytest.mark.parametrize("bootstrap", [False, True])
def test_bundled_worker_process(bootstrap: bool) -> None:
    sup, child = socket.socketpair()
    extra = {worker.CONTROL_FD_ENV: str(child.fileno())}
    if bootstrap:
        extra[worker.BOOTSTRAP_ENV] = "1"
        extra[worker.HEARTBEAT_MS_ENV] = "10"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpsupervisor.worker"], env=_child_env(**extra), pass_fds=[child.fileno()]
    )
    child.close()
    with sup:
        reader = sup.makefile("rb")
        if bootstrap:
            sup.sendall(b'BOOTSTRAP {"k": 1}\n')
        assert reader.readline() == b"READY\n"
        if bootstrap:
            assert reader.readline() == b"HEARTBEAT\n"
        sup.sendall(b"STOP NOW\n")
        assert proc.wait(timeout=30) == 0
        reader.close()


def test_bundled_worker_without_channel_waits_for_sigterm() -> None:
    env = _child_env()
    env.pop(worker.CONTROL_FD_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "mpsupervisor.worker"], env=env)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
