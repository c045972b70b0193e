"""discover_supervisors / create_supervisor and the bundled-worker group translation."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List

import pytest

from mpsupervisor import (
    LocalBootstrapSupervisor,
    MultiprocessBootstrapSupervisor,
    _native,
    create_supervisor,
    discover_supervisors,
)
from mpsupervisor.bootstrap import library_group, library_logging


def test_discovery_order() -> None:
    assert discover_supervisors() == [MultiprocessBootstrapSupervisor, LocalBootstrapSupervisor]


def test_create_supervisor_prefers_multiprocess(native: object) -> None:
    sup = create_supervisor()
    try:
        assert isinstance(sup, MultiprocessBootstrapSupervisor)
    finally:
        sup.close()


def test_create_supervisor_falls_back_to_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_native.LIBRARY_ENV, "/nonexistent/libmpsupervisor.so")
    monkeypatch.setattr(_native, "_LIBRARY", None)
    assert isinstance(create_supervisor(), LocalBootstrapSupervisor)


def test_library_group_for_the_bundled_worker() -> None:
    out = library_group({"name": "g", "workers": 2, "nodes": ["n"], "runner_profile": "sync", "env": {"A": "1"}})
    assert out["argv"] == [sys.executable, "-m", "mpsupervisor.worker"]
    assert out["readiness"] == "notify"
    assert out["env"]["A"] == "1"
    assert "nodes" not in out and "runner_profile" not in out
    assert set(out) <= {"name", "workers", "argv", "env", "readiness"}


def test_library_group_keeps_an_explicit_argv_untouched() -> None:
    group = {"name": "g", "argv": ["/bin/true"], "nodes": []}
    assert library_group(group) == {"name": "g", "argv": ["/bin/true"]}


def test_library_group_part2_worker_settings() -> None:
    out = library_group({"name": "g", "bootstrap": {"x": 1}, "heartbeat_timeout_ms": 300})
    assert "MPSUPERVISOR_WORKER_BOOTSTRAP" not in out["env"]  # the library sets MPSUP_BOOTSTRAP
    assert out["env"]["MPSUPERVISOR_WORKER_HEARTBEAT_MS"] == "100"
    assert out["bootstrap"] == {"x": 1}


def test_pythonpath_added_only_when_the_package_is_not_installed() -> None:
    import mpsupervisor

    parent = os.path.dirname(os.path.dirname(os.path.realpath(mpsupervisor.__file__)))
    env = library_group({"name": "g"}).get("env", {})
    inherited = [os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if "site-packages" in parent or parent in inherited:
        assert "PYTHONPATH" not in env
    else:
        assert env["PYTHONPATH"].split(os.pathsep)[0] == parent


STDOUT = [{"kind": "stdout"}]


@pytest.mark.parametrize(
    "settings, events, exporters",
    [
        ({}, {"enabled": True, "level": "info"}, STDOUT),
        ({"lifecycle_events": None}, {"enabled": True, "level": "info"}, STDOUT),
        ({"lifecycle_events": [True]}, {"enabled": True, "level": "info"}, STDOUT),
        ({"lifecycle_events": {"level": "off"}}, {"enabled": False, "level": "info"}, []),
        ({"lifecycle_events": {"level": "none"}}, {"enabled": False, "level": "info"}, []),
        ({"lifecycle_events": {"enabled": False}}, {"enabled": False, "level": "info"}, []),
        ({"lifecycle_events": {"level": "full"}}, {"enabled": True, "level": "debug"}, STDOUT),
        ({"lifecycle_events": {"level": "warning"}}, {"enabled": True, "level": "warn"}, STDOUT),
        ({"lifecycle_events": {"level": "ERROR"}}, {"enabled": True, "level": "error"}, STDOUT),
        ({"lifecycle_events": {"level": "verbose"}}, {"enabled": True, "level": "info"}, STDOUT),
        (
            {
                "tracing": {"x": 1},
                "exporters": [
                    "junk",
                    {"kind": "otel_otlp", "settings": {}},
                    {"kind": "stderr", "settings": {"color": True}},
                    {"kind": "jsonl", "settings": {"path": "/l.jsonl", "workers_dir": "/w", "flush_every_n": 5}},
                    {"kind": "jsonl", "settings": {"mode": "append"}},  # no path: dropped
                    {"kind": "jsonl", "enabled": False, "settings": {"path": "/off.jsonl"}},
                ],
            },
            {"enabled": True, "level": "info"},
            [{"kind": "stderr"}, {"kind": "jsonl", "settings": {"path": "/l.jsonl"}}],
        ),
    ],
)
def test_library_logging_translates_the_originals_settings(
    settings: Dict[str, Any], events: Dict[str, Any], exporters: List[Dict[str, Any]]
) -> None:
    assert library_logging(settings) == {"lifecycle_events": events, "exporters": exporters}
