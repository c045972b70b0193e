"""The host hands its workers to its next image through Python (API.md part 9): a Python host
prepares, ``os.execv``s itself and adopts; the workers keep their pids and a graceful stop
reaches them over the control sockets the first image made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Set

import pytest

import mpsupervisor
from conftest import READY_TIMEOUT, alive, events_of, wait_for_events
from mpsupervisor import InvalidHandleError, Supervisor

POLITE = 'echo READY >&3; while read -r line <&3; do case "$line" in STOP*) exit 0;; esac; done'

HOST = r"""
import json, os, sys
from mpsupervisor import Supervisor
ready = float(sys.argv[2])  # argv: host.py GROUPS_JSON READY_TIMEOUT
if "MPSUP_HANDOVER_FD" in os.environ:
    sup = Supervisor.adopt(int(os.environ.pop("MPSUP_HANDOVER_FD")))
    print("SNAPSHOT", json.dumps(sup.snapshot()), flush=True)
    sup.stop_groups(ready, True)
    print("EVENTS", json.dumps(sup.drain_events()), flush=True)
    sup.close()
    sys.exit(0)
sup = Supervisor()
sup.configure_process_groups(json.loads(sys.argv[1]))
sup.start_groups(["g"])
assert sup.wait_ready(ready)
print("SNAPSHOT", json.dumps(sup.snapshot()), flush=True)
fd = sup.handover_prepare()
os.environ["MPSUP_HANDOVER_FD"] = str(fd)
os.execv(sys.executable, [sys.executable] + sys.argv)
"""


def test_a_python_host_hands_its_workers_to_its_next_image(seen: Set[int], tmp_path: Path) -> None:
    groups = [{"name": "g", "workers": 2, "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE]}]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(mpsupervisor.__file__).resolve().parents[1])] + sys.path)
    script = tmp_path / "host.py"
    script.write_text(HOST)
    host = subprocess.Popen(
        [sys.executable, str(script), json.dumps(groups), str(READY_TIMEOUT)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    seen.add(host.pid)
    try:
        out, _ = host.communicate(timeout=120)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    lines = [l.split(" ", 1) for l in out.splitlines()]
    snapshots = [json.loads(rest) for tag, rest in lines if tag == "SNAPSHOT"]
    assert len(snapshots) == 2, out
    before: List[int] = [w["pid"] for w in snapshots[0]["g"]]
    seen.update(before)
    assert [w["pid"] for w in snapshots[1]["g"]] == before
    assert host.returncode == 0, out
    events = [json.loads(rest) for tag, rest in lines if tag == "EVENTS"][0]
    adopted = [e for e in events if e["kind"] == "supervisor_adopted"]
    assert adopted and adopted[0]["workers"] == 2 and adopted[0]["exited_meanwhile"] == 0, events
    stopped = [e for e in events if e["kind"] == "worker_stopped"]
    assert sorted(e["pid"] for e in stopped) == sorted(before), events
    assert all(e["mode"] == "graceful" and e["exit_code"] == 0 for e in stopped), events


def is_memfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
    except OSError:
        return False


def test_abort_after_prepare_leaves_a_live_supervisor(sup: Supervisor, seen: Set[int]) -> None:
    """An ``exec`` that failed: ``handover_abort`` gives the handle back; the workers ran on
    (same pids), and scale, status and a graceful stop work as before."""
    sup.configure_process_groups([{"name": "g", "workers": 2, "argv": ["/bin/sh", "-c", POLITE]}])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT)
    before = [w["pid"] for w in sup.snapshot()["g"]]
    seen.update(before)
    fd = sup.handover_prepare()
    assert is_memfd(fd)
    with pytest.raises(InvalidHandleError):
        sup.status()
    sup.handover_abort()
    assert not is_memfd(fd)
    assert [w["pid"] for w in sup.snapshot()["g"]] == before
    assert all(alive(pid) for pid in before)
    sup.scale_group("g", 3)
    assert sup.wait_ready(READY_TIMEOUT)
    status = sup.status()
    assert status["groups"]["g"]["running"] == 3 and status["groups"]["g"]["ready"] == 3, status
    after = [w["pid"] for w in sup.snapshot()["g"]]
    seen.update(after)
    assert after[:2] == before
    sup.stop_groups(READY_TIMEOUT, True)
    events = wait_for_events(sup, lambda e: len(events_of(e, "worker_stopped")) == 3)
    stopped = events_of(events, "worker_stopped")
    assert sorted(e["pid"] for e in stopped) == sorted(after), events
    assert all(e["mode"] == "graceful" and e["exit_code"] == 0 for e in stopped), events
