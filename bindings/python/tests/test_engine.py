"""The engine through the Python binding: status, live scaling, rolling restarts."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from conftest import LISTENER, READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

POLITE = 'echo READY >&3; while read -r line <&3; do case "$line" in STOP*) exit 0;; esac; done'


def group(workers: int, **extra: object) -> Dict[str, Any]:
    return {"name": "web", "workers": workers, "readiness": "notify",
            "argv": ["/bin/sh", "-c", POLITE], **extra}


def test_status_reports_targets_and_guarantees(sup: Supervisor) -> None:
    sup.configure_process_groups([group(2)])
    sup.start_groups(["web"])
    assert sup.wait_ready(READY_TIMEOUT)
    status = sup.status()
    web = status["groups"]["web"]
    assert (web["started"], web["target"], web["running"], web["ready"], web["generation"]) == (True, 2, 2, 2, 1)
    assert status["guarantees"]["spawn"] == "posix_spawn"
    assert status["guarantees"]["exit_watch"] in ("pidfd", "poll")
    sup.stop_groups(READY_TIMEOUT, True)


def test_scale_up_and_down(sup: Supervisor) -> None:
    sup.configure_process_groups([group(1)])
    sup.start_groups(["web"])
    assert sup.wait_ready(READY_TIMEOUT)
    sup.scale_group("web", 3)
    assert sup.wait_ready(READY_TIMEOUT)
    assert [w["worker_id"] for w in sup.snapshot()["web"]] == ["web#1", "web#2", "web#3"]
    sup.scale_group("web", 1)
    events = wait_for_events(sup, lambda seen: len(events_of(seen, "worker_stopped")) == 2)
    assert {e["worker_id"] for e in events_of(events, "worker_stopped")} == {"web#2", "web#3"}
    assert [(e["from"], e["to"]) for e in events_of(events, "group_scaled")] == [(1, 3), (3, 1)]
    with pytest.raises(KeyError):
        sup.scale_group("nope", 1)
    with pytest.raises(ValueError):
        sup.scale_group("web", -1)
    sup.stop_groups(READY_TIMEOUT, True)


def test_rolling_restart_deploys_the_new_configuration(sup: Supervisor) -> None:
    sup.configure_process_groups([group(2, env={"VERSION": "1"})])
    sup.start_groups(["web"])
    assert sup.wait_ready(READY_TIMEOUT)
    old = {w["pid"] for w in sup.snapshot()["web"]}
    sup.configure_process_groups([group(2, env={"VERSION": "2"})])
    sup.restart_groups(["web"], {"max_surge": 1, "max_unavailable": 0})
    assert sup.wait_ready(READY_TIMEOUT)
    # The old workers stay in the snapshot (state stopping) until they are reaped.
    events = wait_for_events(
        sup, lambda seen: bool(events_of(seen, "rollout_finished")) and len(events_of(seen, "worker_stopped")) == 2
    )
    assert len(events_of(events, "worker_replaced")) == 2
    workers = sup.snapshot()["web"]
    assert all(w["generation"] == 2 and w["pid"] not in old for w in workers)
    for w in workers:
        with open(f"/proc/{w['pid']}/environ", "rb") as f:
            assert b"VERSION=2" in f.read().split(b"\0")
    with pytest.raises(ValueError):
        sup.restart_groups(["web"], {"surge": 1})
    sup.stop_groups(READY_TIMEOUT, True)


def test_listen_sockets_reach_the_workers_of_an_installed_package(sup: Supervisor) -> None:
    import socket
    import sys

    sup.configure_process_groups([{
        "name": "web", "workers": 2, "argv": [sys.executable, "-c", LISTENER],
        "readiness": "sd_notify", "control_channel": "off",
        "listen": [{"name": "http", "tcp": "127.0.0.1:0"}],
    }])
    sup.start_groups(["web"])
    assert sup.wait_ready(READY_TIMEOUT), sup.drain_events()
    (entry,) = sup.status()["groups"]["web"]["listen"]
    host, port = entry["address"].rsplit(":", 1)
    assert entry["name"] == "http" and host == "127.0.0.1" and int(port) > 0
    with socket.create_connection((host, int(port)), timeout=READY_TIMEOUT) as conn:
        pid, names = conn.makefile().readline().split()
    assert int(pid) in [w["pid"] for w in sup.snapshot()["web"]]
    assert names == "http"
    sup.stop_groups(READY_TIMEOUT, False)
    assert sup.status()["groups"]["web"]["listen"] == []
