"""One group at a time and recycling through the Python binding: stop_named_groups,
signal_group, reload_groups, replace_worker."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

POLITE = 'echo READY >&3; while read -r line <&3; do case "$line" in STOP*) exit 0;; esac; done'

# An sd_notify worker: on SIGHUP it sends RELOADING=1, works 0.4 s, then READY=1; on SIGUSR1 it
# writes its pid to $DIR/usr1.<pid> (its handlers are in place before READY=1).
NOTIFY = r"""
import os, signal, socket, sys, time
def notify(msg):
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(msg, "\0" + os.environ["NOTIFY_SOCKET"][1:])
asked = []
signal.signal(signal.SIGHUP, lambda *a: asked.append(1))
signal.signal(signal.SIGUSR1, lambda *a: open(os.path.join(os.environ["DIR"], "usr1.%d" % os.getpid()), "w").close())
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
notify(b"READY=1")
while True:
    if asked:
        asked.clear()
        notify(b"RELOADING=1\nMONOTONIC_USEC=%d" % (time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))
        time.sleep(0.4)
        notify(b"READY=1")
    time.sleep(0.01)
"""


def polite(name: str, workers: int) -> Dict[str, Any]:
    return {"name": name, "workers": workers, "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE]}


def notify_group(name: str, workers: int, directory: Path) -> Dict[str, Any]:
    return {"name": name, "workers": workers, "readiness": "sd_notify", "control_channel": "off",
            "env": {"DIR": str(directory)}, "argv": ["python3", "-c", NOTIFY]}


def pids(sup: Supervisor, name: str) -> List[int]:
    return [w["pid"] for w in sup.snapshot().get(name, [])]


def test_stop_named_groups_leaves_the_others_running(sup: Supervisor) -> None:
    sup.configure_process_groups([polite("a", 2), polite("b", 1)])
    sup.start_groups(["a", "b"])
    assert sup.wait_ready(READY_TIMEOUT)
    b_before = pids(sup, "b")
    sup.drain_events()
    with pytest.raises(KeyError):
        sup.stop_named_groups(["nope"], READY_TIMEOUT, True)
    sup.stop_named_groups(["a"], READY_TIMEOUT, True)
    stopped = events_of(sup.drain_events(), "worker_stopped")
    assert sorted(e["worker_id"] for e in stopped) == ["a#1", "a#2"]
    assert all(e["mode"] == "graceful" for e in stopped)
    assert pids(sup, "a") == [] and pids(sup, "b") == b_before
    assert sup.status()["groups"]["a"]["started"] is False
    sup.start_groups(["a"])
    assert sup.wait_ready(READY_TIMEOUT)
    assert len(pids(sup, "a")) == 2
    sup.stop_groups(READY_TIMEOUT, True)


def test_signal_group_and_reload_groups(sup: Supervisor, tmp_path: Path) -> None:
    sup.configure_process_groups([notify_group("d", 2, tmp_path)])
    sup.start_groups(["d"])
    assert sup.wait_ready(READY_TIMEOUT)
    before = sorted(pids(sup, "d"))
    sup.signal_group("d", signal.SIGUSR1)
    deadline = time.monotonic() + READY_TIMEOUT
    while sorted(int(p.name.split(".")[1]) for p in tmp_path.glob("usr1.*")) != before:
        assert time.monotonic() < deadline, list(tmp_path.iterdir())
        time.sleep(0.01)
    with pytest.raises(ValueError):
        sup.signal_group("d", 0)

    sup.drain_events()
    sup.reload_groups(["d"])
    assert {w["state"] for w in sup.snapshot()["d"]} == {"reloading"}
    assert sup.wait_ready(READY_TIMEOUT)
    events = sup.drain_events()
    reloaded = events_of(events, "worker_reloaded")
    assert len(reloaded) == 2 and all(e["duration_ms"] >= 400 for e in reloaded)
    assert sorted(pids(sup, "d")) == before
    sup.stop_groups(READY_TIMEOUT, True)


def test_replace_worker_is_ready_before_the_old_one_stops(sup: Supervisor) -> None:
    sup.configure_process_groups([polite("r", 1)])
    sup.start_groups(["r"])
    assert sup.wait_ready(READY_TIMEOUT)
    [old] = pids(sup, "r")
    sup.drain_events()
    sup.replace_worker("r#1")
    events = wait_for_events(sup, lambda seen: any(e["kind"] == "worker_stopped" for e in seen))
    [recycled] = events_of(events, "worker_recycled")
    assert (recycled["reason"], recycled["old_pid"]) == ("requested", old)
    kinds = [(e["kind"], e.get("pid")) for e in events]
    assert kinds.index(("worker_ready", recycled["new_pid"])) < kinds.index(("worker_stopping", old))
    assert pids(sup, "r") == [recycled["new_pid"]]
    with pytest.raises(KeyError):
        sup.replace_worker("r#2")
    sup.stop_groups(READY_TIMEOUT, True)
