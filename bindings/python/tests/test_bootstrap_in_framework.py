"""The drop-in inside a host framework: its log sinks, the calls it does not implement, stops.

The fakes below stand for the original framework's interfaces: a log sink has
``emit(message)``; ``LogMessage`` has ``level``, ``message``, ``timestamp``, ``fields``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import pytest

from conftest import READY_TIMEOUT, events_of
from mpsupervisor import MultiprocessBootstrapSupervisor, Supervisor
from mpsupervisor._native import NativeLibrary


@dataclass
class FakeLogMessage:  # the framework's record type
    level: str
    message: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(tz=timezone.utc))
    fields: Dict[str, object] = field(default_factory=dict)


class FakeSink:
    def __init__(self) -> None:
        self.emitted: List[FakeLogMessage] = []

    def emit(self, message: FakeLogMessage) -> None:
        self.emitted.append(message)


class BrokenSink:
    def emit(self, message: FakeLogMessage) -> None:
        raise RuntimeError("sink is down")


class FrameworkSupervisor(MultiprocessBootstrapSupervisor):
    """What the framework's subclass does: its record type and its sinks."""

    log_record_type = FakeLogMessage

    def __init__(self, native: NativeLibrary, sinks: Sequence[object]) -> None:
        super().__init__(Supervisor(native))
        self.sinks = list(sinks)
        self.settings_seen: List[Dict[str, object]] = []

    def lifecycle_log_sinks(self, settings: Dict[str, object]) -> Optional[Sequence[object]]:
        self.settings_seen.append(settings)
        return self.sinks


STDOUT_DEBUG: Dict[str, object] = {"exporters": [{"kind": "stdout"}], "lifecycle_events": {"enabled": True, "level": "debug"}}
STOPS_ON_STOP = [sys.executable, "-c", "import mpsupervisor.worker as w; w.notify_ready(); w.wait_stop()"]
IGNORES_STOP = [sys.executable, "-c", "import mpsupervisor.worker as w, time; w.notify_ready(); time.sleep(600)"]


def test_lifecycle_records_reach_the_hosts_sinks_at_the_configured_level(
    native: NativeLibrary, capfd: pytest.CaptureFixture[str]
) -> None:
    sink = FakeSink()
    mp = FrameworkSupervisor(native, [BrokenSink(), sink])
    with mp:
        mp.configure_lifecycle_logging(STDOUT_DEBUG)
        assert mp.settings_seen == [STDOUT_DEBUG]
        mp.configure_process_groups([{"name": "execution.cpu", "workers": 1}])
        mp.start_groups(["execution.cpu"])
        assert mp.wait_ready(READY_TIMEOUT) is True
        mp.stop_groups(graceful_timeout_seconds=READY_TIMEOUT, drain_inflight=True)
        # Each call hands its events to the sinks before it returns.
        assert [m.message for m in sink.emitted] == [
            "bootstrap.worker_spawned",
            "bootstrap.supervisor_start_groups",
            "bootstrap.worker_ready",
            "bootstrap.worker_stopping",
            "bootstrap.worker_stopped",
        ]
        events = mp.lifecycle_events()
    assert all(isinstance(m, FakeLogMessage) for m in sink.emitted)
    assert {m.level for m in sink.emitted} == {"debug"}  # the configured level, not the event's
    for message, event in zip(sink.emitted, events):
        assert message.fields == event  # the original's shape: fields{kind, ts_epoch_ms, ...}
        assert message.fields["kind"] == message.message[len("bootstrap."):]
        stamp = event["ts_epoch_ms"]
        assert isinstance(stamp, int)
        assert message.timestamp == datetime.fromtimestamp(stamp / 1000, tz=timezone.utc)
    stopped = sink.emitted[-1].fields
    assert stopped["worker_id"] == "execution.cpu#1" and stopped["mode"] == "graceful"
    # The library's own exporter is off: records are not written twice.
    assert "bootstrap." not in capfd.readouterr().out


def test_emit_event_hook_is_kept_and_logged(native: NativeLibrary) -> None:
    sink = FakeSink()
    with FrameworkSupervisor(native, [sink]) as mp:
        mp.configure_lifecycle_logging(STDOUT_DEBUG)
        mp._emit_event(kind="test_event", group_name="execution.cpu")
        (message,) = sink.emitted
        assert (message.level, message.message) == ("debug", "bootstrap.test_event")
        assert message.fields["group_name"] == "execution.cpu"
        assert isinstance(message.fields["ts_epoch_ms"], int)
        assert mp.lifecycle_events()[-1]["kind"] == "test_event"


def test_disabled_lifecycle_logging_emits_nothing_but_keeps_events(native: NativeLibrary) -> None:
    sink = FakeSink()
    with FrameworkSupervisor(native, [sink]) as mp:
        mp.configure_lifecycle_logging({"lifecycle_events": {"enabled": False}})
        mp.start_groups(["g"])
        mp.force_terminate_groups(["g"])
        assert sink.emitted == []
        assert events_of(mp.lifecycle_events(), "worker_stopped")


def test_level_follows_the_latest_settings(native: NativeLibrary) -> None:
    sink = FakeSink()
    with FrameworkSupervisor(native, [sink]) as mp:
        mp.configure_lifecycle_logging({"lifecycle_events": {"level": "info"}})
        mp.start_groups(["g"])
        mp.configure_lifecycle_logging({"lifecycle_events": {"level": "warning"}})
        mp.force_terminate_groups(["g"])
    assert [m.level for m in sink.emitted] == ["info", "info", "warning", "warning"]


@pytest.mark.parametrize(
    "settings",
    [
        {"lifecycle_events": []},
        {"lifecycle_events": {"enabled": "yes"}},
        {"lifecycle_events": {"level": ""}},
        {"lifecycle_events": {"level": 3}},
        {"exporters": {"kind": "stdout"}},
    ],
)
def test_logging_settings_are_checked_as_the_original_did(native: NativeLibrary, settings: Dict[str, Any]) -> None:
    with FrameworkSupervisor(native, [FakeSink()]) as mp, pytest.raises(ValueError):
        mp.configure_lifecycle_logging(settings)
    with MultiprocessBootstrapSupervisor(Supervisor(native)) as plain, pytest.raises(ValueError):
        plain.configure_lifecycle_logging(settings)


def test_boundary_and_routing_cache_calls_raise_not_implemented(mp: MultiprocessBootstrapSupervisor) -> None:
    ran: List[bool] = []
    with pytest.raises(NotImplementedError, match="execute_boundary"):
        mp.execute_boundary(run=lambda: ran.append(True), run_id="r1", scenario_id="s1", inputs=[object()])
    assert ran == []  # the work is neither run nor dropped silently
    with pytest.raises(NotImplementedError, match="route_cache_snapshot"):
        mp.route_cache_snapshot()
    with pytest.raises(NotImplementedError, match="configure_routing_cache"):
        mp.configure_routing_cache({"enabled": True, "max_entries": 10})
    mp.configure_routing_cache({})  # what the framework passes when nothing is configured
    with pytest.raises(ValueError):
        mp.configure_routing_cache("no")  # type: ignore[arg-type]


def test_after_a_stop_timeout_only_the_workers_still_alive_are_stopped(mp: MultiprocessBootstrapSupervisor) -> None:
    mp.configure_process_groups(
        [
            {"name": "polite", "workers": 2, "argv": STOPS_ON_STOP, "readiness": "notify"},
            {"name": "stubborn", "argv": IGNORES_STOP, "readiness": "notify"},
        ]
    )
    mp.start_groups(["polite", "stubborn"])
    assert mp.wait_ready(READY_TIMEOUT) is True
    with pytest.raises(TimeoutError, match="stubborn#1"):
        mp.stop_groups(graceful_timeout_seconds=1, drain_inflight=True)
    snap = mp.snapshot()
    assert snap["polite"] == [] and [w["worker_id"] for w in snap["stubborn"]] == ["stubborn#1"]
    mp.force_terminate_groups(["polite", "stubborn"])
    events = mp.lifecycle_events()
    stopped = sorted((e["worker_id"], e["mode"]) for e in events_of(events, "worker_stopped"))
    assert stopped == [("polite#1", "graceful"), ("polite#2", "graceful"), ("stubborn#1", "forced")]
    forced = [e["worker_id"] for e in events_of(events, "worker_stopping") if e["mode"] == "forced"]
    assert forced == ["stubborn#1"]
    assert mp.snapshot() == {"polite": [], "stubborn": []}
