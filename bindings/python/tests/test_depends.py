"""Dependencies between groups (``depends_on``) through the Python binding."""

from __future__ import annotations

import os
import signal
from typing import Any, Dict, List

import pytest

from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

POLITE = 'echo READY >&3; while read -r line <&3; do case "$line" in STOP*) exit 0;; esac; done'


def groups(migration_exit: int) -> List[Dict[str, Any]]:
    return [
        {"name": "db", "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE]},
        {"name": "migrate", "restart": "never", "argv": ["/bin/sh", "-c", f"exit {migration_exit}"],
         "depends_on": {"db": "ready"}},
        {"name": "web", "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE],
         "depends_on": {"db": "ready", "migrate": "completed"}},
    ]


def test_web_starts_after_its_migration_completed(sup: Supervisor) -> None:
    sup.configure_process_groups(groups(0))
    sup.start_groups(["web"])
    events = wait_for_events(sup, lambda seen: any(e["group_name"] == "web" for e in events_of(seen, "worker_ready")))
    assert sup.wait_ready(READY_TIMEOUT)
    waiting = {e["group_name"]: e["waiting_for"] for e in events_of(events, "group_waiting")}
    assert waiting == {"migrate": ["db"], "web": ["db", "migrate"]}
    completed = events_of(events, "group_completed")
    web_spawned = [e for e in events_of(events, "worker_spawned") if e["group_name"] == "web"]
    assert [e["group_name"] for e in completed] == ["migrate"]
    assert completed[0]["seq"] < web_spawned[0]["seq"]
    assert sup.status()["groups"]["web"]["waiting_for"] == []
    sup.stop_groups(READY_TIMEOUT, True)


def test_a_failed_migration_fails_web(sup: Supervisor) -> None:
    sup.configure_process_groups(groups(3))
    sup.start_groups(["web"])
    events = wait_for_events(sup, lambda seen: bool(events_of(seen, "group_failed")))
    failed = events_of(events, "group_failed")[0]
    assert (failed["group_name"], failed["reason"], failed["dependency"]) == ("web", "dependency_failed", "migrate")
    assert not sup.wait_ready(READY_TIMEOUT)
    sup.stop_groups(READY_TIMEOUT, True)


def test_a_cycle_is_rejected_naming_the_path(sup: Supervisor) -> None:
    cycle = [{"name": "a", "argv": ["/bin/true"], "depends_on": {"b": "started"}},
             {"name": "b", "argv": ["/bin/true"], "depends_on": {"a": "started"}}]
    with pytest.raises(ValueError, match=r"groups\[0\]\.depends_on: a -> b -> a"):
        sup.configure_process_groups(cycle)


def test_a_restart_bound_group_rolls_out_once_its_dependency_is_ready_again(sup: Supervisor) -> None:
    sup.configure_process_groups([
        {"name": "db", "readiness": "notify", "restart": "always", "restart_delay_ms": 1,
         "argv": ["/bin/sh", "-c", POLITE]},
        {"name": "web", "workers": 2, "readiness": "notify", "argv": ["/bin/sh", "-c", POLITE],
         "depends_on": {"db": "ready"}, "on_dependency_restart": "restart"},
    ])
    sup.start_groups(["web"])
    assert sup.wait_ready(READY_TIMEOUT)
    old_web = {w["pid"] for w in sup.snapshot()["web"]}
    sup.drain_events()
    os.kill(sup.snapshot()["db"][0]["pid"], signal.SIGKILL)
    events = wait_for_events(sup, lambda seen: any(e["group_name"] == "web" for e in events_of(seen, "rollout_finished"))
                             and len([e for e in events_of(seen, "worker_stopped") if e["group_name"] == "web"]) == 2)
    db_ready = [e for e in events_of(events, "worker_ready") if e["group_name"] == "db"]
    rollout = [e for e in events_of(events, "rollout_started") if e["group_name"] == "web"]
    assert len(db_ready) == 1 and len(rollout) == 1
    assert db_ready[0]["seq"] < rollout[0]["seq"]
    assert sup.wait_ready(READY_TIMEOUT)
    assert not old_web & {w["pid"] for w in sup.snapshot()["web"]}
    sup.stop_groups(READY_TIMEOUT, True)
