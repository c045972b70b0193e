"""`Supervisor` (one method per C call) and the error mapping, against the native library."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import mpsupervisor
from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Result, Supervisor
from mpsupervisor._errors import errno_from_message, error_for
from mpsupervisor._native import NativeLibrary, mpsup_supervisor, open_library

PY_WORKER = [sys.executable, "-c", "import mpsupervisor.worker as w; w.notify_ready(); w.wait_stop()"]
NOTIFY_SH = ["sh", "-c", 'echo READY >&"$MPSUP_CONTROL_FD"; read line <&"$MPSUP_CONTROL_FD"']


def group(name: str = "g", **extra: Any) -> Dict[str, Any]:
    return {"name": name, "argv": NOTIFY_SH, "readiness": "notify", **extra}


def test_version(native: NativeLibrary) -> None:
    assert mpsupervisor.version() == native.version()
    assert native.version().count(".") == 2


def test_result_names(native: NativeLibrary) -> None:
    for result in Result:
        assert native.result_name(result) == f"MPSUP_{result.name}"
    assert native.result_name(12345) == "MPSUP_ERR_UNKNOWN"


def test_start_ready_stop_cycle(sup: Supervisor) -> None:
    sup.configure_process_groups([group(workers=3)])
    sup.start_groups(["g"])
    assert sup.wait_ready(0) is False
    assert sup.wait_ready(READY_TIMEOUT) is True
    snap = sup.snapshot()
    assert [w["worker_id"] for w in snap["g"]] == ["g#1", "g#2", "g#3"]
    assert all(w["ready"] and w["state"] == "ready" for w in snap["g"])
    sup.stop_groups(READY_TIMEOUT, True)
    assert sup.snapshot() == {}
    events = sup.drain_events()
    assert len(events_of(events, "worker_ready")) == 3
    assert [(e["mode"], e["exit_code"]) for e in events_of(events, "worker_stopped")] == [("graceful", 0)] * 3


def test_configure_accepts_json_text(sup: Supervisor) -> None:
    sup.configure_process_groups('[{"name": "j", "argv": ["sleep", "600"], "control_channel": "off"}]')
    sup.start_groups([])  # nothing to start is fine
    assert sup.snapshot() == {}
    sup.start_groups(["j"])
    assert [w["worker_id"] for w in sup.snapshot()["j"]] == ["j#1"]
    sup.force_terminate_groups(["j"])


def test_drain_events_max_and_event_fd(sup: Supervisor) -> None:
    fd = sup.event_fd()
    assert select.select([fd], [], [], 0)[0] == []
    sup.configure_process_groups([group(workers=2)])
    sup.start_groups(["g"])
    assert select.select([fd], [], [], READY_TIMEOUT)[0] == [fd]
    first = sup.drain_events(1)
    assert len(first) == 1 and first[0]["seq"] == 1 and first[0]["kind"] == "worker_spawned"
    rest = wait_for_events(sup, lambda seen: len(events_of(seen, "supervisor_start_groups")) == 1)
    assert [e["seq"] for e in rest] == list(range(2, len(rest) + 2))
    sup.force_terminate_groups(["g"])
    wait_for_events(sup, lambda seen: len(events_of(seen, "worker_stopped")) == 2)
    assert select.select([fd], [], [], 0)[0] == []
    with pytest.raises(ValueError):
        sup.drain_events(-1)


def test_python_worker_helpers_in_a_real_worker(sup: Supervisor) -> None:
    env = {"PYTHONPATH": str(Path(mpsupervisor.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sup.configure_process_groups([{"name": "py", "argv": PY_WORKER, "readiness": "notify", "env": env}])
    sup.start_groups(["py"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    sup.stop_groups(READY_TIMEOUT, False)
    (stopped,) = events_of(sup.drain_events(), "worker_stopped")
    assert stopped["exit_code"] == 0


def _in_forked_child(child: Callable[[], bool]) -> bool:
    """Whether ``child()`` returned True in a forked child (which exits with os._exit)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    exited = select.select([pidfd], [], [], READY_TIMEOUT)[0] == [pidfd]
    if not exited:
        os.kill(pid, signal.SIGKILL)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return exited and os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_leaves_the_parents_workers_alone(sup: Supervisor) -> None:
    sup.configure_process_groups([group(workers=2)])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True

    def child() -> bool:
        try:
            sup.snapshot()
            return False  # called into the library
        except mpsupervisor.InvalidHandleError as exc:
            assert "forked child" in str(exc)
        sup.close()  # what garbage collection or interpreter exit would run: forgets the handle
        return sup.closed

    assert _in_forked_child(child)
    assert [(w["alive"], w["state"]) for w in sup.snapshot()["g"]] == [(True, "ready")] * 2
    assert events_of(sup.drain_events(), "worker_stopping") == []


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "groups",
    [
        [{"name": "g"}],  # argv missing
        [{"name": "g", "argv": []}],
        [{"name": "g", "argv": ["true"], "workers": 0}],
        [{"name": "g", "argv": ["true"], "surprise": 1}],
        [{"name": "g", "argv": ["true"]}, {"name": "g", "argv": ["true"]}],
        "not json",
        {"name": "g", "argv": ["true"]},  # not an array
    ],
)
def test_bad_config_is_value_error(sup: Supervisor, groups: Any) -> None:
    with pytest.raises(ValueError) as info:
        sup.configure_process_groups(groups)
    assert isinstance(info.value, mpsupervisor.InvalidConfigError)
    assert info.value.result == Result.ERR_INVALID_CONFIG
    assert str(info.value) == info.value.message != ""


def test_bad_config_names_the_json_path(sup: Supervisor) -> None:
    with pytest.raises(ValueError, match=r"groups\[1\]"):
        sup.configure_process_groups([group("a"), {"name": "b", "argv": "not-a-list"}])


def test_rejected_config_keeps_the_old_one(sup: Supervisor) -> None:
    sup.configure_process_groups([group("a")])
    with pytest.raises(ValueError):
        sup.configure_process_groups([group("b", workers="x")])
    sup.start_groups(["a"])
    with pytest.raises(KeyError):
        sup.start_groups(["b"])


def test_unknown_group_is_key_error(sup: Supervisor) -> None:
    sup.configure_process_groups([group("a")])
    with pytest.raises(KeyError) as info:
        sup.start_groups(["a", "nope"])
    assert isinstance(info.value, mpsupervisor.UnknownGroupError)
    assert "nope" in str(info.value)
    assert sup.snapshot() == {}  # validation first: nothing spawned
    with pytest.raises(KeyError):
        sup.force_terminate_groups(["nope"])


def test_invalid_argument_is_value_error(sup: Supervisor) -> None:
    with pytest.raises(ValueError) as info:
        sup.stop_groups(-1, True)
    assert isinstance(info.value, mpsupervisor.InvalidArgumentError)
    with pytest.raises(ValueError):
        sup.stop_groups(float("nan"), True)


def test_spawn_failure_is_os_error_with_errno(sup: Supervisor) -> None:
    sup.configure_process_groups([group("ok", workers=2), {"name": "bad", "argv": ["/nonexistent/worker"]}])
    with pytest.raises(OSError) as info:
        sup.start_groups(["ok", "bad"])
    assert isinstance(info.value, mpsupervisor.SpawnError)
    assert info.value.errno == errno.ENOENT
    assert sup.snapshot().get("ok", []) == []  # the call's workers were killed and reaped


def test_timeout_is_timeout_error(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "s", "argv": ["sleep", "600"]}])
    sup.start_groups(["s"])
    with pytest.raises(TimeoutError) as info:
        sup.stop_groups(0.1, True)
    assert isinstance(info.value, mpsupervisor.SupervisorTimeoutError)
    assert str(info.value) == "worker 's#1' did not stop within graceful timeout"
    sup.force_terminate_groups(["s"])
    assert sup.snapshot() == {}


def test_close_twice_and_use_after_close(native: NativeLibrary) -> None:
    sup = Supervisor(native)
    sup.configure_process_groups([group(workers=2)])
    sup.start_groups(["g"])
    pids = [w["pid"] for w in sup.snapshot()["g"]]
    sup.close()
    sup.close()
    assert sup.closed
    for pid in pids:  # free force-terminated and reaped them
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError) as info:
        sup.snapshot()
    assert isinstance(info.value, mpsupervisor.InvalidHandleError)
    for call in (lambda: sup.start_groups(["g"]), lambda: sup.wait_ready(1), sup.event_fd):
        with pytest.raises(RuntimeError):
            call()


def test_context_manager(native: NativeLibrary) -> None:
    with Supervisor(native) as sup:
        assert not sup.closed
    assert sup.closed


def test_library_rejects_freed_and_made_up_handles(native: NativeLibrary) -> None:
    out = mpsup_supervisor()
    native.check(native.mpsup_supervisor_new(ctypes.byref(out)))
    stale = mpsup_supervisor(out.id)
    assert native.mpsup_supervisor_free(out) == Result.OK
    for handle in (stale, mpsup_supervisor(0), mpsup_supervisor(0xDEADBEEF12345678)):
        fd = ctypes.c_int(-1)
        assert native.mpsup_event_fd(handle, ctypes.byref(fd)) == Result.ERR_INVALID_HANDLE
        assert native.last_error_message() != ""
        assert native.mpsup_supervisor_free(handle) == Result.ERR_INVALID_HANDLE


def test_last_error_is_per_thread(sup: Supervisor) -> None:
    messages: List[str] = []

    def fail() -> None:
        try:
            sup.start_groups(["from-thread"])
        except KeyError as exc:
            messages.append(str(exc))

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()
    with pytest.raises(ValueError) as info:
        sup.stop_groups(-5, False)
    assert "from-thread" in messages[0]
    assert "from-thread" not in str(info.value)


def test_bad_names_are_rejected_before_the_call(sup: Supervisor) -> None:
    with pytest.raises(TypeError):
        sup.start_groups("g")
    with pytest.raises(TypeError):
        sup.start_groups([1])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        sup.start_groups(["a\0b"])


# -- Part 2, bound lazily ------------------------------------------------------------------


def test_part2_calls_are_bound_on_first_use(sup: Supervisor, native: NativeLibrary) -> None:
    lib = NativeLibrary(native.cdll, native.path)
    assert "mpsup_start_work" not in lib._optional
    bound = lib.optional("mpsup_start_work")
    assert lib._optional["mpsup_start_work"] is bound
    with pytest.raises(NotImplementedError, match="mpsup_not_a_function"):
        lib.optional("mpsup_not_a_function")
    # never says READY, so start_work must refuse, naming it
    sup.configure_process_groups([{"name": "a", "argv": ["sleep", "600"], "readiness": "notify"}])
    sup.start_groups(["a"])
    with pytest.raises(RuntimeError, match="a#1") as info:
        sup.start_work(["a"])
    assert isinstance(info.value, mpsupervisor.NotReadyError)
    sup.force_terminate_groups(["a"])


# -- error mapping without the library ----------------------------------------------------


def test_errno_parsing() -> None:
    assert errno_from_message("spawn 'x': No such file or directory (os error 2)") == errno.ENOENT
    assert errno_from_message("socketpair failed: errno 24") == 24
    assert errno_from_message("open: Permission denied") == errno.EACCES
    assert errno_from_message("something odd") is None
    err = error_for(Result.ERR_OS, "pidfd_open: Too many open files (os error 24)")
    assert isinstance(err, OSError) and err.errno == 24
    err = error_for(Result.ERR_SPAWN, "no errno here")
    assert isinstance(err, OSError) and err.errno is None
    assert isinstance(error_for(Result.ERR_PANIC, "x"), RuntimeError)
    assert isinstance(error_for(Result.ERR_NOT_READY, "x"), RuntimeError)
    assert isinstance(error_for(Result.ERR_UNSUPPORTED, "x"), mpsupervisor.UnsupportedError)
    assert isinstance(error_for(99, "x"), RuntimeError)


def test_missing_library_is_a_clear_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPSUPERVISOR_LIBRARY", "/nonexistent/libmpsupervisor.so")
    with pytest.raises(OSError, match="MPSUPERVISOR_LIBRARY"):
        open_library()
