"""The original MultiprocessBootstrapSupervisor's contract tests, against the native library."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import READY_TIMEOUT, events_of
from mpsupervisor import LocalBootstrapSupervisor, MultiprocessBootstrapSupervisor, Supervisor
from mpsupervisor._native import NativeLibrary
from mpsupervisor.bootstrap import library_logging

NOTIFY_SH = ["sh", "-c", 'echo READY >&"$MPSUP_CONTROL_FD"; read line <&"$MPSUP_CONTROL_FD"']


def test_wait_ready_zero_is_false_after_start(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "execution.cpu", "workers": 1}])
    mp.start_groups(["execution.cpu"])
    assert mp.wait_ready(0) is False
    assert mp.wait_ready(READY_TIMEOUT) is True


def test_graceful_stop_emits_worker_stopped_graceful(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "execution.cpu", "workers": 1}])
    mp.start_groups(["execution.cpu"])
    assert mp.wait_ready(READY_TIMEOUT) is True
    mp.stop_groups(graceful_timeout_seconds=1, drain_inflight=True)
    stopped = events_of(mp.lifecycle_events(), "worker_stopped")
    assert [e["mode"] for e in stopped] == ["graceful"]
    assert stopped[0]["worker_id"] == "execution.cpu#1"
    assert stopped[0]["exit_code"] == 0  # the bundled worker read STOP DRAIN and exited
    assert mp.snapshot() == {}  # as the original: a graceful stop forgets every group


def test_graceful_stop_before_ready(mp: MultiprocessBootstrapSupervisor) -> None:
    # STOP waits in the socket until the worker reads it.
    mp.configure_process_groups([{"name": "g", "workers": 2}])
    mp.start_groups(["g"])
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=False)
    stopped = events_of(mp.lifecycle_events(), "worker_stopped")
    assert sorted(e["worker_id"] for e in stopped) == ["g#1", "g#2"]
    assert all(e["mode"] == "graceful" for e in stopped)


def test_force_terminate_right_after_start_is_forced(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "execution.cpu", "workers": 1}])
    mp.start_groups(["execution.cpu"])
    mp.force_terminate_groups(["execution.cpu"])
    events = mp.lifecycle_events()
    stopping = events_of(events, "worker_stopping")
    stopped = events_of(events, "worker_stopped")
    assert [e["mode"] for e in stopping] == ["forced"]
    assert [e["mode"] for e in stopped] == ["forced"]
    assert stopped[0]["signal"] == 9 or stopped[0]["exit_code"] is not None
    assert mp.snapshot() == {"execution.cpu": []}


def test_two_workers_listed_right_after_start(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "execution.cpu", "workers": 2}])
    mp.start_groups(["execution.cpu"])
    snap = mp.snapshot()
    workers = snap["execution.cpu"]
    assert [w["worker_id"] for w in workers] == ["execution.cpu#1", "execution.cpu#2"]
    for worker in workers:
        assert worker["pid"] == worker["os_pid"] != os.getpid()
        assert worker["alive"] is True
        assert isinstance(worker["ready"], bool)
        assert worker["has_stop_event"] is True
        assert worker["has_control_channel"] is True


def test_lifecycle_events_is_a_list_and_keeps_everything(mp: MultiprocessBootstrapSupervisor) -> None:
    assert mp.lifecycle_events() == []
    mp.configure_process_groups([{"name": "g"}])
    mp.start_groups(["g"])
    first = mp.lifecycle_events()
    assert isinstance(first, list) and all(isinstance(e, dict) for e in first)
    assert [e["kind"] for e in first[:2]] == ["worker_spawned", "supervisor_start_groups"]
    mp.force_terminate_groups(["g"])
    second = mp.lifecycle_events()
    assert second[: len(first)] == first  # not draining: earlier events stay
    assert [e["seq"] for e in second] == list(range(1, len(second) + 1))
    second.clear()  # a copy
    assert mp.lifecycle_events()


def test_force_terminate_after_graceful_stop_is_noop(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "execution.cpu", "workers": 1}])
    mp.start_groups(["execution.cpu"])
    assert mp.wait_ready(READY_TIMEOUT)
    mp.stop_groups(graceful_timeout_seconds=1, drain_inflight=True)
    before = mp.lifecycle_events()
    mp.force_terminate_groups(["execution.cpu"])
    assert mp.lifecycle_events() == before
    assert mp.snapshot() == {}


def test_fallback_path_without_control_channel(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups([{"name": "g", "workers": 1, "control_channel": "off"}])
    mp.start_groups(["g"])
    (worker,) = mp.snapshot()["g"]
    assert worker["has_stop_event"] is False
    assert worker["stop_strategy"] == "terminate_fallback"
    assert worker["has_control_channel"] is False
    spawned = events_of(mp.lifecycle_events(), "worker_spawned")
    assert spawned[0]["stop_strategy"] == "terminate_fallback"
    assert spawned[0]["control_channel"] == "unavailable"
    # readiness "notify" without a channel falls back to warmup
    assert mp.wait_ready(READY_TIMEOUT) is True
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)
    (stopped,) = events_of(mp.lifecycle_events(), "worker_stopped")
    assert stopped["mode"] == "graceful"
    assert stopped["signal"] == 15  # SIGTERM, the default stop_signal


def test_group_never_configured_gets_one_bundled_worker(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.start_groups(["adhoc"])
    assert [w["worker_id"] for w in mp.snapshot()["adhoc"]] == ["adhoc#1"]
    assert mp.wait_ready(READY_TIMEOUT) is True
    assert [e["worker_id"] for e in events_of(mp.lifecycle_events(), "worker_ready")] == ["adhoc#1"]
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)


def test_original_group_keys_are_accepted_and_dropped(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups(
        [{"name": "execution.cpu", "workers": 2, "nodes": ["a", "b"], "runner_profile": "sync"}]
    )
    mp.start_groups(["execution.cpu"])
    assert len(mp.snapshot()["execution.cpu"]) == 2


def test_custom_argv_worker(mp: MultiprocessBootstrapSupervisor) -> None:
    script = 'echo READY >&"$MPSUP_CONTROL_FD"; read line <&"$MPSUP_CONTROL_FD"; exit 3'
    mp.configure_process_groups([{"name": "sh", "argv": ["sh", "-c", script], "readiness": "notify"}])
    mp.start_groups(["sh"])
    assert mp.wait_ready(READY_TIMEOUT) is True
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)
    (stopped,) = events_of(mp.lifecycle_events(), "worker_stopped")
    assert stopped["exit_code"] == 3


@pytest.mark.parametrize(
    "group",
    [
        {"workers": 1},
        {"name": ""},
        {"name": 7},
        {"name": "g", "workers": 0},
        {"name": "g", "workers": -1},
        {"name": "g", "workers": "2"},
        {"name": "g", "workers": True},
        {"name": "g", "workers": 1.5},
        "not a dict",
    ],
)
def test_bad_groups_raise_value_error(mp: MultiprocessBootstrapSupervisor, group: object) -> None:
    with pytest.raises(ValueError):
        mp.configure_process_groups([group])  # type: ignore[list-item]


def test_duplicate_and_library_rejected_groups_raise_value_error(mp: MultiprocessBootstrapSupervisor) -> None:
    with pytest.raises(ValueError):
        mp.configure_process_groups([{"name": "g"}, {"name": "g"}])
    with pytest.raises(ValueError):
        mp.configure_process_groups([{"name": "g#1"}])  # '#' is reserved for worker ids
    with pytest.raises(ValueError):
        mp.configure_process_groups([{"name": "g", "readiness": "someday"}])


def test_stop_timeout_raises_timeout_error(mp: MultiprocessBootstrapSupervisor) -> None:
    # `sleep` never reads its control channel, so STOP goes unanswered.
    mp.configure_process_groups([{"name": "stubborn", "argv": ["sleep", "600"]}])
    mp.start_groups(["stubborn"])
    with pytest.raises(TimeoutError, match=r"worker 'stubborn#1' did not stop within graceful timeout"):
        mp.stop_groups(graceful_timeout_seconds=0.2, drain_inflight=True)
    assert [w["state"] for w in mp.snapshot()["stubborn"]] == ["stopping"]
    mp.force_terminate_groups(["stubborn"])
    stopped = events_of(mp.lifecycle_events(), "worker_stopped")
    assert [(e["mode"], e["signal"]) for e in stopped] == [("forced", 9)]
    assert mp.snapshot() == {"stubborn": []}


def test_force_terminate_ignores_unconfigured_names(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.force_terminate_groups(["never-configured"])  # the original ignored such names
    assert mp.lifecycle_events() == []
    mp.configure_process_groups([{"name": "a"}, {"name": "b"}])
    mp.start_groups(["a", "b"])
    mp.configure_process_groups([{"name": "a"}])  # b's workers keep running
    mp.force_terminate_groups(["nope", "b"])
    snap = mp.snapshot()
    assert list(snap) == ["a", "b"] and snap["b"] == []  # as the original: a killed group lists []
    stopped = events_of(mp.lifecycle_events(), "worker_stopped")
    assert [(e["worker_id"], e["mode"]) for e in stopped] == [("b#1", "forced")]


def test_context_manager_and_close(native: object) -> None:
    with MultiprocessBootstrapSupervisor() as mp:
        mp.start_groups(["g"])
    mp.close()
    with pytest.raises(RuntimeError):
        mp.snapshot()


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
def test_stop_waits_at_least_one_second(mp: MultiprocessBootstrapSupervisor, timeout: float) -> None:
    # The original used max(1, graceful_timeout_seconds).
    mp.configure_process_groups([{"name": "sh", "workers": 2, "argv": NOTIFY_SH, "readiness": "notify"}])
    mp.start_groups(["sh"])
    assert mp.wait_ready(READY_TIMEOUT) is True
    mp.stop_groups(graceful_timeout_seconds=timeout, drain_inflight=True)
    stopped = events_of(mp.lifecycle_events(), "worker_stopped")
    assert [(e["mode"], e["exit_code"]) for e in stopped] == [("graceful", 0)] * 2


def test_close_keeps_the_forced_stops_for_lifecycle_events(native: NativeLibrary) -> None:
    mp = MultiprocessBootstrapSupervisor(Supervisor(native))
    mp.configure_process_groups([{"name": "g", "workers": 2}])
    mp.start_groups(["g"])
    before = mp.lifecycle_events()
    mp.close()
    after = mp.lifecycle_events()
    assert after[: len(before)] == before
    stopped = events_of(after, "worker_stopped")
    assert sorted((e["worker_id"], e["mode"]) for e in stopped) == [("g#1", "forced"), ("g#2", "forced")]
    mp.close()
    assert mp.lifecycle_events() == after


def test_events_have_ts_epoch_ms_and_snapshot_lists_started_groups(mp: MultiprocessBootstrapSupervisor) -> None:
    # The original's snapshot: the groups started since the last graceful stop.
    mp.configure_process_groups([{"name": "a"}, {"name": "idle"}])
    assert mp.snapshot() == {}
    mp.start_groups(["a"])
    assert [w["worker_id"] for w in mp.snapshot()["a"]] == ["a#1"]
    mp.force_terminate_groups(["a"])
    assert mp.snapshot() == {"a": []}
    mp.start_groups(["a"])
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)
    assert mp.snapshot() == {}
    events = mp.lifecycle_events()
    assert events and all(e["ts_epoch_ms"] == e["ts_ms"] for e in events)


def test_start_groups_holds_the_config_lock_while_starting(native: NativeLibrary) -> None:
    # Otherwise a concurrent configure_process_groups could drop the group before it starts.
    held: List[bool] = []

    class Watching(Supervisor):
        def start_groups(self, names: Any) -> None:
            held.append(mp._config_lock.locked())
            super().start_groups(names)

    with MultiprocessBootstrapSupervisor(Watching(native)) as mp:
        mp.start_groups(["adhoc"])
    assert held == [True]


ORIGINAL_LOGGING: List[Dict[str, Any]] = [
    {"lifecycle_events": {"enabled": True, "level": "info"}, "exporters": [{"kind": "stdout"}]},
    {"exporters": [{"kind": "jsonl", "settings": {"path": "/tmp/x.jsonl", "workers_dir": "/tmp/w"}}]},
    {"exporters": [{"kind": "otel_otlp", "settings": {}}]},
    {"lifecycle_events": {"enabled": True, "level": "warning"}},
    {"lifecycle_events": {"enabled": True, "level": "off"}},
    {"lifecycle_events": {"level": "full"}},
    {"lifecycle_events": None},
    {"exporters": [{"kind": "jsonl", "enabled": False, "settings": {"path": "/tmp/x.jsonl"}}]},
    {"tracing": {}, "exporters": []},
    {"exporters": ["junk", None]},
]


@pytest.mark.parametrize("settings", ORIGINAL_LOGGING)
def test_lifecycle_logging_takes_the_originals_settings(mp: MultiprocessBootstrapSupervisor, settings: Any) -> None:
    mp.configure_lifecycle_logging(settings)
    # The translation is one the library itself accepts, with exporters it knows ...
    translated = library_logging(settings)
    assert {e["kind"] for e in translated.get("exporters", [])} <= {"stdout", "stderr", "jsonl"}
    # ... and the supervisor goes on working under it.
    mp.start_groups(["g"])
    assert mp.wait_ready(READY_TIMEOUT)
    mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)
    kinds = [e["kind"] for e in mp.lifecycle_events()]
    assert "worker_ready" in kinds and "worker_stopped" in kinds


def test_lifecycle_logging_stays_strict_on_the_plain_supervisor(mp: MultiprocessBootstrapSupervisor) -> None:
    with pytest.raises(ValueError):
        mp.supervisor.configure_lifecycle_logging({"exporters": [{"kind": "otel_otlp", "settings": {}}]})


def test_lifecycle_logging_with_the_originals_jsonl_exporter(native: NativeLibrary, tmp_path: Path) -> None:
    path = tmp_path / "sup.jsonl"
    jsonl = {"path": str(path), "workers_dir": str(tmp_path / "workers"), "mode": "append", "flush_every_n": 1}
    mp = MultiprocessBootstrapSupervisor(Supervisor(native))
    mp.configure_lifecycle_logging(
        {"lifecycle_events": {"enabled": True, "level": "full"}, "exporters": [{"kind": "jsonl", "settings": jsonl}]}
    )
    mp.start_groups(["g"])
    mp.close()  # the writer has written every record once the handle is freed
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert "bootstrap.worker_spawned" in messages and "bootstrap.worker_stopped" in messages


# -- the local fallback, same contract -------------------------------------------------


def test_local_supervisor_contract() -> None:
    local = LocalBootstrapSupervisor()
    local.configure_process_groups([{"name": "execution.cpu", "workers": 2, "nodes": ["x"]}])
    local.start_groups(["execution.cpu"])
    assert local.wait_ready(0) is False
    assert [w["worker_id"] for w in local.snapshot()["execution.cpu"]] == ["execution.cpu#1", "execution.cpu#2"]
    assert local.wait_ready(1) is True
    local.stop_groups(graceful_timeout_seconds=1, drain_inflight=True)
    assert {e["mode"] for e in events_of(local.lifecycle_events(), "worker_stopped")} == {"graceful"}
    before = local.lifecycle_events()
    local.force_terminate_groups(["execution.cpu"])
    assert local.lifecycle_events() == before
    local.start_groups(["execution.cpu"])
    local.force_terminate_groups(["execution.cpu"])
    assert events_of(local.lifecycle_events(), "worker_stopped")[-1]["mode"] == "forced"
    local.configure_process_groups([{"name": "g", "control_channel": "off"}])
    local.start_groups(["g"])
    (worker,) = local.snapshot()["g"]
    assert worker["has_stop_event"] is False and worker["stop_strategy"] == "terminate_fallback"
    with pytest.raises(ValueError):
        local.configure_process_groups([{"name": "g", "workers": 0}])
    assert [e["seq"] for e in local.lifecycle_events()] == list(range(1, len(local.lifecycle_events()) + 1))
