"""restart_strategy through the Python binding: under one_for_all, one worker killed makes
every worker of its group be replaced."""

from __future__ import annotations

import os
import signal
from typing import List

from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

POLITE = 'echo READY >&3; while read -r line <&3; do case "$line" in STOP*) exit 0;; esac; done'


def pids(sup: Supervisor) -> List[int]:
    return [w["pid"] for w in sup.snapshot().get("g", [])]


def test_one_for_all_replaces_every_worker(sup: Supervisor) -> None:
    sup.configure_process_groups([{
        "name": "g", "workers": 3, "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE],
        "restart": "always", "restart_delay_ms": 1, "restart_strategy": "one_for_all",
    }])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT)
    before = pids(sup)
    sup.drain_events()
    os.kill(before[1], signal.SIGKILL)
    events = wait_for_events(sup, lambda seen: len(events_of(seen, "worker_ready")) == 3)
    assert sorted(e["worker_id"] for e in events_of(events, "worker_stopped")) == ["g#1", "g#3"]
    assert len(events_of(events, "worker_restarting")) == 3
    assert sup.wait_ready(READY_TIMEOUT)
    assert not set(pids(sup)) & set(before)
    sup.stop_groups(READY_TIMEOUT, True)
