"""The drop-in inside a host framework: its log sinks, the calls it does not implement, stops.

Without the framework (CI cannot fetch it): its lifecycle-logging contract (SUP-07, SUP-09,
SUP-11) is held below against fakes of its sinks and resolver.

The fakes below stand for the original framework's interfaces: a log sink has
``emit(message)``; ``LogMessage`` has ``level``, ``message``, ``timestamp``, ``fields``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest

from conftest import READY_TIMEOUT, events_of
from mpsupervisor import MultiprocessBootstrapSupervisor, Supervisor
from mpsupervisor._native import NativeLibrary
from mpsupervisor.bootstrap import original_lifecycle_log_sinks


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


# -- the framework's own sinks, as its lifecycle-logging contract tests use them --------
#
# The framework's P5PRE-SUP-07, SUP-09 and SUP-11 (scripts/framework-dropin-tests runs them
# against the drop-in) check that `_emit_event` reaches its StdoutLogSink (patched on the
# class), its jsonl sink and a fan-out to both, at the configured level. The fakes below have
# those sinks' interface: `emit(message)` (and `close()`), built by a resolver called as
# `resolve(settings=...)`; FakeFrameworkSupervisor is the subclass that script appends.


def _row(message: FakeLogMessage) -> Dict[str, object]:
    return {
        "level": message.level,
        "message": message.message,
        "timestamp": message.timestamp.isoformat(),
        "fields": message.fields,
    }


class FakeStdoutLogSink:
    def emit(self, message: FakeLogMessage) -> None:
        print(json.dumps(_row(message)))


class FakeJsonlLogSink:
    def __init__(self, path: Path) -> None:
        self.path = path

    def emit(self, message: FakeLogMessage) -> None:
        with self.path.open("a", encoding="utf-8") as out:  # the framework's keeps it open
            out.write(json.dumps(_row(message)) + "\n")

    def close(self) -> None:
        pass


class FakeFanoutLogSink:
    def __init__(self, sinks: List[object]) -> None:
        self.sinks = sinks

    def emit(self, message: FakeLogMessage) -> None:
        for sink in self.sinks:
            getattr(sink, "emit")(message)


def fake_resolve(*, settings: Dict[str, object]) -> Optional[object]:
    """The framework's resolver: a sink per stdout or jsonl exporter; several fan out."""
    exporters = settings.get("exporters")
    sinks: List[object] = []
    for exporter in exporters if isinstance(exporters, list) else []:
        options = exporter.get("settings") if isinstance(exporter, dict) else None
        if isinstance(exporter, dict) and exporter.get("kind") == "stdout":
            sinks.append(FakeStdoutLogSink())
        elif isinstance(exporter, dict) and exporter.get("kind") == "jsonl" and isinstance(options, dict):
            sinks.append(FakeJsonlLogSink(Path(str(options["path"]))))
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else FakeFanoutLogSink(sinks)


Resolver = Optional[Callable[..., Optional[object]]]


class FakeFrameworkSupervisor(MultiprocessBootstrapSupervisor):
    log_record_type = FakeLogMessage

    def __init__(self, native: NativeLibrary, resolve: Resolver = fake_resolve) -> None:
        super().__init__(Supervisor(native))
        self.resolve = resolve

    def lifecycle_log_sinks(self, settings: Dict[str, object]) -> Optional[Sequence[object]]:
        return original_lifecycle_log_sinks(settings, stdout_sink=FakeStdoutLogSink, resolve=self.resolve)


def _captured_stdout_sink(monkeypatch: pytest.MonkeyPatch) -> List[FakeLogMessage]:
    emitted: List[FakeLogMessage] = []

    def capture(self: FakeStdoutLogSink, message: FakeLogMessage) -> None:
        emitted.append(message)

    monkeypatch.setattr(FakeStdoutLogSink, "emit", capture)
    return emitted


def _rows(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl(path: Path) -> Dict[str, object]:
    return {"kind": "jsonl", "settings": {"path": str(path)}}


DEBUG: Dict[str, object] = {"enabled": True, "level": "debug"}


def test_sup_07_records_reach_the_frameworks_stdout_sink(native: NativeLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    emitted = _captured_stdout_sink(monkeypatch)
    with FakeFrameworkSupervisor(native) as mp:
        mp.configure_lifecycle_logging({"exporters": [{"kind": "stdout"}], "lifecycle_events": DEBUG})
        mp._emit_event(kind="test_event", group_name="execution.cpu")
        message = emitted[-1]
        assert isinstance(message, FakeLogMessage)
        assert (message.level, message.message) == ("debug", "bootstrap.test_event")
        assert message.fields.get("group_name") == "execution.cpu"


def test_sup_09_records_reach_the_frameworks_jsonl_sink(
    native: NativeLibrary, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "supervisor_lifecycle.jsonl"
    with FakeFrameworkSupervisor(native) as mp:
        mp.configure_lifecycle_logging({"exporters": [_jsonl(path)], "lifecycle_events": DEBUG})
        mp._emit_event(kind="test_event", group_name="execution.cpu")
        assert _rows(path)[-1]["message"] == "bootstrap.test_event"
        # The library's events go the same way, at the configured level.
        mp.start_groups(["execution.cpu"])
        mp.force_terminate_groups(["execution.cpu"])
        rows = _rows(path)
    messages = [row["message"] for row in rows]
    assert "bootstrap.worker_spawned" in messages and "bootstrap.worker_stopped" in messages
    assert {row["level"] for row in rows} == {"debug"}
    assert "bootstrap." not in capfd.readouterr().out  # neither the default sink nor the library's


def test_sup_11_records_fan_out_to_stdout_and_jsonl(
    native: NativeLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted = _captured_stdout_sink(monkeypatch)
    path = tmp_path / "supervisor_fanout.jsonl"
    with FakeFrameworkSupervisor(native) as mp:
        mp.configure_lifecycle_logging({"exporters": [{"kind": "stdout"}, _jsonl(path)], "lifecycle_events": DEBUG})
        mp._emit_event(kind="test_fanout", group_name="execution.cpu")
        assert emitted[-1].message == "bootstrap.test_fanout"
        assert _rows(path)[-1]["message"] == "bootstrap.test_fanout"


def test_the_frameworks_stdout_sink_is_the_default(native: NativeLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeFrameworkSupervisor(native) as mp:
        mp.configure_lifecycle_logging({"lifecycle_events": {"level": "info"}})
        mp._emit_event(kind="test_event")
        (line,) = [line for line in capsys.readouterr().out.splitlines() if "bootstrap." in line]
        assert json.loads(line)["message"] == "bootstrap.test_event"
        assert json.loads(line)["level"] == "info"
        mp.configure_lifecycle_logging({"lifecycle_events": {"enabled": False}})
        mp._emit_event(kind="test_event")
        assert "bootstrap." not in capsys.readouterr().out


def test_original_lifecycle_log_sinks_calls_the_resolver_as_the_original(tmp_path: Path) -> None:
    seen: List[Dict[str, object]] = []

    def resolve(*, settings: Dict[str, object]) -> Optional[object]:
        seen.append(settings)
        return None  # no sink: the default one

    settings: Dict[str, object] = {"exporters": [_jsonl(tmp_path / "x.jsonl")], "lifecycle_events": DEBUG}
    (sink,) = original_lifecycle_log_sinks(settings, stdout_sink=FakeStdoutLogSink, resolve=resolve)
    assert seen == [settings] and seen[0] is not settings  # a dict of its own, as the original's
    assert isinstance(sink, FakeStdoutLogSink)
    disabled: Dict[str, object] = {"lifecycle_events": {"enabled": False}}
    assert original_lifecycle_log_sinks(disabled, stdout_sink=FakeStdoutLogSink, resolve=resolve) == []
    with pytest.raises(ValueError):
        original_lifecycle_log_sinks({"exporters": "stdout"}, stdout_sink=FakeStdoutLogSink, resolve=resolve)


def test_without_a_resolver_only_stdout_is_honoured(
    native: NativeLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The framework's earlier versions had no resolver and no jsonl sink: stdout or nothing.
    jsonl_only: Dict[str, object] = {"exporters": [_jsonl(tmp_path / "x.jsonl")]}
    (sink,) = original_lifecycle_log_sinks(jsonl_only, stdout_sink=FakeStdoutLogSink)
    assert isinstance(sink, FakeStdoutLogSink) and not (tmp_path / "x.jsonl").exists()
    disabled: Dict[str, object] = {"exporters": [{"kind": "stdout"}], "lifecycle_events": {"enabled": False}}
    (sink,) = original_lifecycle_log_sinks(disabled, stdout_sink=FakeStdoutLogSink)
    assert isinstance(sink, FakeStdoutLogSink)  # built, as the original built it, but never used
    emitted = _captured_stdout_sink(monkeypatch)
    with FakeFrameworkSupervisor(native, resolve=None) as mp:
        mp.configure_lifecycle_logging(disabled)
        mp._emit_event(kind="unlogged")
        mp.configure_lifecycle_logging({"exporters": [{"kind": "stdout"}], "lifecycle_events": DEBUG})
        mp._emit_event(kind="logged")
    assert [m.message for m in emitted] == ["bootstrap.logged"]
