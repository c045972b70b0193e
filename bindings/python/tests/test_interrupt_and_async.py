"""Ctrl-C during blocking calls, the sliced wait_ready, and the asyncio calls, with real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import READY_TIMEOUT, events_of
from mpsupervisor import Supervisor
from mpsupervisor._native import NativeLibrary

NOTIFY_PY = [sys.executable, "-c", "import mpsupervisor.worker as w; w.notify_ready(); w.wait_stop()"]
NEVER_READY = [sys.executable, "-c", "import time; time.sleep(600)"]  # never sends READY, ignores STOP


def _main_thread_blocked(pid: int) -> bool:
    """Whether the process's main thread sleeps in a system call (here: inside the library's wait).

    /proc/PID/syscall says "running" while it runs; the child has printed its line before
    the call, so a blocked main thread is inside it."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/syscall").read_text()
    except (OSError, PermissionError):
        return False
    return not text.startswith("running")


def _interrupt_during(call: str, tmp_path: Path, on_interrupt: str = "") -> Dict[str, Any]:
    """Run a host that blocks in ``call``; SIGINT it once it is blocked; time SIGINT → its
    KeyboardInterrupt (the line it prints) and SIGINT → its exit."""
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            from mpsupervisor import Supervisor
            # Python leaves SIGINT ignored when it starts with it ignored (a runner started in
            # the background by a shell without job control): Ctrl-C as an interactive host has it.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            with Supervisor() as sup:
                sup.configure_process_groups([{{"name": "g", "readiness": "notify", "argv": {NEVER_READY!r}}}])
                sup.start_groups(["g"])
                print("blocking", flush=True)
                try:
                    sup.{call}
                except KeyboardInterrupt:
                    print("KeyboardInterrupt", flush=True)
                    {on_interrupt}
                    sys.exit(42)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "blocking\n"
        deadline = time.monotonic() + READY_TIMEOUT
        while not _main_thread_blocked(proc.pid):  # waits for a state, bounded
            assert time.monotonic() < deadline, "the host never blocked"
            time.sleep(0.005)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline()
        interrupted = time.monotonic() - sent
        out, err = proc.communicate(timeout=READY_TIMEOUT)
        exited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return {"returncode": proc.returncode, "line": line, "rest": out, "err": err,
            "interrupted": interrupted, "exited": exited}


def test_ctrl_c_during_wait_ready_raises_keyboard_interrupt_promptly(native: NativeLibrary, tmp_path: Path) -> None:
    result = _interrupt_during("wait_ready(8.0)", tmp_path)
    assert (result["returncode"], result["line"], result["rest"]) == (42, "KeyboardInterrupt\n", ""), result
    # The slice is 50 ms; 2 s leaves room for a loaded machine and is far below the 8 s wait.
    assert result["interrupted"] < 2.0, result
    assert result["exited"] < 2.0, result  # close() kills the worker at once


def test_ctrl_c_during_stop_groups_raises_keyboard_interrupt_promptly(native: NativeLibrary, tmp_path: Path) -> None:
    # The stop goes on in its helper thread, and the library's free waits for a call in
    # progress: the host ends the stubborn worker itself so that the stop (and close) end.
    kill = 'os.kill(sup.snapshot()["g"][0]["pid"], signal.SIGKILL)'
    result = _interrupt_during("stop_groups(8.0, True)", tmp_path, on_interrupt=kill)
    assert (result["returncode"], result["line"], result["rest"]) == (42, "KeyboardInterrupt\n", ""), result
    assert result["interrupted"] < 2.0, result
    assert result["exited"] < 2.0, result


def test_sliced_wait_ready_spans_many_slices(sup: Supervisor) -> None:
    # Ready 300 ms after spawn: six slices of 50 ms at least.
    sup.configure_process_groups([{"name": "g", "workers": 2, "argv": ["sleep", "600"], "warmup_ms": 300}])
    started = time.monotonic()  # before the spawn, from which warmup counts
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    assert time.monotonic() - started >= 0.3
    assert len(events_of(sup.drain_events(), "worker_ready")) == 2


def test_sliced_wait_ready_is_false_at_once_when_a_worker_failed(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "g", "readiness": "notify", "argv": ["sh", "-c", "exit 3"]}])
    sup.start_groups(["g"])
    started = time.monotonic()
    assert sup.wait_ready(READY_TIMEOUT) is False
    assert time.monotonic() - started < READY_TIMEOUT / 2  # not the whole timeout
    assert events_of(sup.drain_events(), "worker_failed")


def test_sliced_wait_ready_edge_cases(sup: Supervisor) -> None:
    started = time.monotonic()
    assert sup.wait_ready(READY_TIMEOUT) is False  # no workers: at once
    assert time.monotonic() - started < READY_TIMEOUT / 2
    sup.configure_process_groups([{"name": "g", "argv": ["sleep", "600"]}])
    sup.start_groups(["g"])
    assert sup.wait_ready(0) is False
    assert sup.wait_ready(float("nan")) is False
    started = time.monotonic()
    assert sup.wait_ready(0.001) is False  # shorter than one slice
    assert time.monotonic() - started < READY_TIMEOUT / 2


def test_stop_groups_keeps_its_deadline_and_timeout_error(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "stubborn", "argv": NEVER_READY}])
    sup.start_groups(["stubborn"])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="stubborn#1"):
        sup.stop_groups(0.3, True)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError):
        sup.stop_groups(-1.0, True)  # the library's error, raised again in the calling thread


# -- asyncio ------------------------------------------------------------------------


def test_wait_ready_and_stop_groups_async(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "g", "workers": 2, "readiness": "notify", "argv": NOTIFY_PY}])

    async def main() -> List[str]:
        sup.start_groups(["g"])
        ticks: List[float] = []

        async def ticker() -> None:  # the loop keeps running while we wait
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick_task = asyncio.ensure_future(ticker())
        try:
            assert await sup.wait_ready_async(READY_TIMEOUT) is True
            await sup.stop_groups_async(READY_TIMEOUT, True)
        finally:
            tick_task.cancel()
        assert ticks
        return [e["worker_id"] for e in events_of(sup.drain_events(), "worker_stopped")]

    assert sorted(asyncio.run(main())) == ["g#1", "g#2"]
    assert sup.snapshot() == {}


def test_stop_groups_async_raises_timeout_error(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "stubborn", "argv": NEVER_READY}])
    sup.start_groups(["stubborn"])

    async def main() -> None:
        await sup.stop_groups_async(0.2, False)

    with pytest.raises(TimeoutError, match="stubborn#1"):
        asyncio.run(main())


def test_wait_ready_async_is_cancelled_promptly(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "g", "readiness": "notify", "argv": NEVER_READY}])
    sup.start_groups(["g"])

    async def main() -> float:
        task = asyncio.ensure_future(sup.wait_ready_async(8.0))
        await asyncio.sleep(0)  # let it start its first slice
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled

    assert asyncio.run(main()) < 2.0


def test_events_yields_events_as_they_come(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "g", "workers": 2, "readiness": "notify", "argv": NOTIFY_PY}])

    async def main() -> List[Dict[str, Any]]:
        seen: List[Dict[str, Any]] = []
        sup.start_groups(["g"])
        async for event in sup.events():
            seen.append(event)
            if event["kind"] == "worker_ready" and len(events_of(seen, "worker_ready")) == 2:
                break
        # A second reader picks up the events of the stop, which come later.
        stopper = asyncio.ensure_future(sup.stop_groups_async(READY_TIMEOUT, True))
        async for event in sup.events():
            seen.append(event)
            if len(events_of(seen, "worker_stopped")) == 2:
                break
        await stopper
        return seen

    seen = asyncio.run(main())
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    kinds = [e["kind"] for e in seen]
    assert kinds[:3] == ["worker_spawned", "worker_spawned", "supervisor_start_groups"]
    assert kinds.count("worker_ready") == 2 and kinds.count("worker_stopped") == 2


def test_events_ends_when_the_supervisor_is_closed(native: NativeLibrary) -> None:
    sup = Supervisor(native)
    sup.configure_process_groups([{"name": "g", "readiness": "notify", "argv": NEVER_READY}])
    sup.start_groups(["g"])

    async def main() -> List[str]:
        kinds: List[str] = []

        async def read() -> None:
            async for event in sup.events():
                kinds.append(event["kind"])
                if event["kind"] == "supervisor_start_groups":
                    # Nothing more comes until close(): close it from another task.
                    asyncio.get_running_loop().call_soon(sup.close)

        await asyncio.wait_for(read(), READY_TIMEOUT)
        return kinds

    try:
        assert asyncio.run(main()) == ["worker_spawned", "supervisor_start_groups"]
    finally:
        sup.close()


def test_events_ends_when_closed_from_another_thread(native: NativeLibrary) -> None:
    import threading

    sup = Supervisor(native)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        async def read() -> None:
            agen = sup.events()
            first = asyncio.ensure_future(agen.__anext__())
            loop.call_soon(started.set)
            with pytest.raises(StopAsyncIteration):
                await first

        reader = asyncio.ensure_future(read())
        await started.wait()
        closer = threading.Thread(target=sup.close)
        closer.start()
        await asyncio.wait_for(reader, READY_TIMEOUT)
        closer.join()

    try:
        asyncio.run(main())
    finally:
        sup.close()


def test_events_cancelled_removes_its_reader(sup: Supervisor) -> None:
    fd = sup.event_fd()

    async def main() -> bool:
        loop = asyncio.get_running_loop()

        async def read() -> None:
            async for _ in sup.events():
                pass

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return loop.remove_reader(fd)  # False: nothing left registered

    assert asyncio.run(main()) is False
    assert os.fstat(fd)  # the supervisor's fd is untouched
