"""Workers die with their host (API.md part 4): a Python host that is SIGKILLed, that leaves
with ``os._exit`` without closing, or that forked a child (no exec, still sleeping) before it
died: every worker and every process of its process group is dead within 1 s. Every process a
test saw is SIGKILLed at its end, whatever happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest

import mpsupervisor

from conftest import READY_TIMEOUT, alive

HOST = r"""
import json, os, signal, sys
import mpsupervisor
mode, groups = sys.argv[1], json.loads(sys.argv[2])
sup = mpsupervisor.Supervisor()
sup.configure_process_groups(groups)
sup.start_groups([g["name"] for g in groups])
assert sup.wait_ready(float(sys.argv[3]))
print("STATUS " + json.dumps(sup.status()))
print("SNAPSHOT " + json.dumps(sup.snapshot()))
if mode == "fork-sigkill":
    child = os.fork()
    if child == 0:
        while True:
            signal.pause()
    print(f"FORKED {child}")
print("WAITING", flush=True)
if not sys.stdin.readline():
    sup.close()
    sys.exit(0)
if mode == "os-exit":
    os._exit(0)
os.kill(os.getpid(), signal.SIGKILL)
"""

POLITE = 'echo READY >&3; while read -r l <&3; do case "$l" in STOP*) exit 0;; esac; done'
GROUPS = [
    {"name": "off", "workers": 2, "argv": ["/bin/sleep", "1000"], "control_channel": "off", "warmup_ms": 1},
    {"name": "deaf", "workers": 2, "readiness": "notify",
     "argv": ["/bin/sh", "-c", "trap '' TERM HUP; echo READY >&3; exec sleep 1000"]},
    {"name": "tree", "workers": 1, "readiness": "notify",
     "argv": ["/bin/sh", "-c", "sleep 1000 & sleep 1000 & echo READY >&3; wait"]},
    {"name": "polite", "workers": 2, "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE]},
    {"name": "worker", "workers": 1, "readiness": "notify",
     "argv": [sys.executable, "-c", "import mpsupervisor.worker as w; w.notify_ready(); w.wait_stop()"]},
]


def stat(pid: int) -> Optional[Tuple[str, int, int]]:
    """(state, ppid, pgid), or None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def all_processes() -> Iterator[Tuple[int, int, int]]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = stat(int(name))
            if s is not None:
                yield int(name), s[1], s[2]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def machine_has_writable_cgroup() -> bool:
    mount = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            mount = Path(left.split()[4])
    own = [l[3:] for l in Path("/proc/self/cgroup").read_text().splitlines() if l.startswith("0::")]
    if mount is None or not own:
        return False
    probe = mount / own[0].lstrip("/") / f"probe-py-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    ok = (probe / "cgroup.kill").exists()
    probe.rmdir()
    return ok


def poll_until(limit: float, done: Callable[[], bool]) -> bool:
    until = time.monotonic() + limit
    while not done():
        if time.monotonic() >= until:
            return False
        time.sleep(0)
    return True


@pytest.mark.parametrize("mode", ["sigkill", "os-exit", "fork-sigkill"])
def test_workers_die_within_a_second_of_the_host(mode: str, seen: Set[int]) -> None:
    env = dict(os.environ)
    env["MPSUP_CGROUP"] = "1"  # every mechanism on: cgroups are opt-in
    env["PYTHONPATH"] = os.pathsep.join([str(Path(mpsupervisor.__file__).resolve().parents[1])] + sys.path)
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, mode, json.dumps(GROUPS), str(READY_TIMEOUT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    seen.add(host.pid)
    try:
        assert host.stdout is not None and host.stdin is not None
        status: Dict[str, Any] = {}
        snapshot: Dict[str, List[Dict[str, Any]]] = {}
        forked: List[int] = []
        for line in host.stdout:
            if line.startswith("STATUS "):
                status = json.loads(line[7:])
            elif line.startswith("SNAPSHOT "):
                snapshot = json.loads(line[9:])
            elif line.startswith("FORKED "):
                forked.append(int(line[7:]))
            elif line.strip() == "WAITING":
                break
        seen.update(forked)
        keepers = [p for p, ppid, _ in all_processes() if ppid == host.pid and comm(p) == "mpsup-keeper"]
        seen.update(keepers)
        workers = [int(w["pid"]) for ws in snapshot.values() for w in ws]
        members = set(workers)
        for pid, ppid, pgid in all_processes():
            if pgid in workers or ppid in workers:
                members.add(pid)
        seen.update(members)
        assert len(workers) == 8, snapshot
        assert len(members) == 8 + 2, members  # the tree's two sleeps
        assert all(alive(p) for p in members)
        guarantees = status["guarantees"]
        assert guarantees["host_death"] == "keeper", status
        expected = "cgroup" if machine_has_writable_cgroup() else "process_group"
        assert guarantees["tree_kill"] == expected, status
        assert len(keepers) == 1

        host.stdin.write("go\n")
        host.stdin.flush()
        code = host.wait(timeout=60)
        assert code == (0 if mode == "os-exit" else -signal.SIGKILL)
        dead = poll_until(1.0, lambda: not any(alive(p) for p in members))
        assert dead, [(p, comm(p)) for p in members if alive(p)]
        for p in forked:
            assert alive(p), "the forked child should still sleep"
        assert poll_until(5.0, lambda: not any(alive(k) for k in keepers)), "the keeper did not exit"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
