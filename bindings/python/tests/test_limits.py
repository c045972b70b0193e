"""Resource limits through the Python binding: a worker past ``memory_max`` fails with
``oom_killed``, and its cgroups are gone once the supervisor is closed. Real cgroups (root)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor
from mpsupervisor._native import NativeLibrary


LIMIT_CONTROLLERS = ("memory", "pids", "cpu")


def hierarchy_key(controllers: str) -> str:
    """The limit controllers of a v1 hierarchy, or "" for cgroup v2."""
    return ",".join(c for c in controllers.split(",") if c in LIMIT_CONTROLLERS)


def our_cgroups() -> List[Path]:
    """Every cgroup a supervisor of this process made, in cgroup v2 and the limits' v1 hierarchies."""
    mounts: Dict[str, Tuple[Path, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fs, _, options = right.split()[:3]
        point, root = Path(left.split()[4]), left.split()[3]
        if fs == "cgroup2":
            mounts[""] = (point, root)
        elif fs == "cgroup" and hierarchy_key(options):
            mounts[hierarchy_key(options)] = (point, root)
    found: List[Path] = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        key = hierarchy_key(controllers)
        if key not in mounts or (controllers and not key):
            continue
        point, root = mounts[key]
        own = point / path[len(root.rstrip("/")):].lstrip("/")
        found += [p for p in own.iterdir() if p.name.startswith(f"mpsup-{os.getpid()}-")]
    return found


def test_a_worker_past_memory_max_fails_with_oom_killed(native: NativeLibrary) -> None:
    assert our_cgroups() == []
    sup = Supervisor(native)
    try:
        assert sup.status()["guarantees"]["limits"] in ("cgroup1", "cgroup2")
        # b"x" * n writes every page (a bytearray would be calloc'd and never touched).
        hog = "b = b'x' * (256 << 20)"
        sup.configure_process_groups([{"name": "mem", "argv": [sys.executable, "-c", hog],
                                       "control_channel": "off", "warmup_ms": 1,
                                       "memory_max": "32M"}])
        sup.start_groups(["mem"])
        events = wait_for_events(sup, lambda seen: bool(events_of(seen, "worker_failed")), READY_TIMEOUT)
        failed = events_of(events, "worker_failed")[0]
        assert (failed["reason"], failed["signal"]) == ("oom_killed", 9), failed
        assert our_cgroups() != []
    finally:
        sup.close()
    assert our_cgroups() == []
