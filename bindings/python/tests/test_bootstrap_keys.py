"""The drop-in passes every key of a group to the library, and rejects an unknown one there."""

from __future__ import annotations

import socket
import sys

import pytest

from conftest import LISTENER, READY_TIMEOUT
from mpsupervisor import LocalBootstrapSupervisor, MultiprocessBootstrapSupervisor
from mpsupervisor.bootstrap import LIBRARY_GROUP_KEYS, ORIGINAL_GROUP_KEYS
from mpsupervisor.types import Group


def test_listen_goes_through_the_drop_in_to_a_real_socket(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{
        "name": "web", "workers": 1, "argv": [sys.executable, "-c", LISTENER],
        "readiness": "sd_notify", "control_channel": "off",
        "listen": [{"name": "http", "tcp": "127.0.0.1:0"}],
        "nodes": ["frontend"],  # the original framework's own key: still left out
    }])
    mp.start_groups(["web"])
    assert mp.wait_ready(READY_TIMEOUT), mp.lifecycle_events()
    (entry,) = mp.supervisor.status()["groups"]["web"]["listen"]
    host, port = entry["address"].rsplit(":", 1)
    assert entry["name"] == "http" and host == "127.0.0.1" and int(port) > 0
    with socket.create_connection((host, int(port)), timeout=READY_TIMEOUT) as conn:
        pid, names = conn.makefile().readline().split()
    assert [int(pid)] == [w["pid"] for w in mp.snapshot()["web"]]
    assert names == "http"
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=False)
    assert mp.supervisor.status()["groups"]["web"]["listen"] == []


def test_an_unknown_key_is_rejected_with_the_librarys_message(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "kept", "workers": 1}])
    with pytest.raises(ValueError) as raised:
        mp.configure_process_groups([{"name": "a", "workers": 1}, {"name": "b", "colour": "red"}])
    message = str(raised.value)
    assert message.startswith("groups[1].colour: unknown field `colour`, expected one of `name`"), message
    # The library's own message: the text a direct configuration gets (but for where in the
    # JSON text it is).
    with pytest.raises(ValueError) as direct:
        mp.supervisor.configure_process_groups([{"name": "a", "argv": ["x"]}, {"name": "b", "argv": ["x"], "colour": "red"}])
    assert str(direct.value).split(" at line ")[0] == message.split(" at line ")[0]
    # All or nothing: the old configuration stays, in the drop-in as in the library.
    mp.start_groups(["kept"])
    assert mp.wait_ready(READY_TIMEOUT)
    assert [w["worker_id"] for w in mp.snapshot()["kept"]] == ["kept#1"]
    assert "a" not in mp.snapshot()


def test_every_key_of_the_typed_group_is_a_library_key() -> None:
    assert LIBRARY_GROUP_KEYS == set(Group.__required_keys__ | Group.__optional_keys__)
    assert not LIBRARY_GROUP_KEYS & ORIGINAL_GROUP_KEYS


def test_the_local_fallback_rejects_an_unknown_key_too() -> None:
    with LocalBootstrapSupervisor() as local:
        local.configure_process_groups([{"name": "g", "nodes": ["n"], "listen": [], "runner_profile": "sync"}])
        with pytest.raises(ValueError, match=r"^groups\[0\]\.colour: unknown field `colour`"):
            local.configure_process_groups([{"name": "g", "colour": "red"}])
