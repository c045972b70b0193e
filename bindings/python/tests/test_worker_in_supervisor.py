"""`mpsupervisor.worker` and the C worker helpers inside real workers started by the library.

Each worker writes what it saw as JSON to the file named by its first argument; the test reads
it after a point the library reports (the worker is ready, or it exited).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import mpsupervisor
from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

PACKAGE_PARENT = str(Path(mpsupervisor.__file__).resolve().parents[1])

REPORT = """\
import json, sys
from mpsupervisor import worker

def report(**seen):
    with open(sys.argv[1], "w") as out:
        json.dump(seen, out)
"""


def py_group(code: str, result: Path, **extra: Any) -> Dict[str, Any]:
    pythonpath = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
    return {
        "name": "g",
        "argv": [sys.executable, "-c", REPORT + code, str(result)],
        "readiness": "notify",
        "env": {"PYTHONPATH": pythonpath},
        **extra,
    }


def wait_for_exit(sup: Supervisor) -> None:
    """Until the one worker has exited on its own (restart "never": `worker_failed`)."""
    (failed,) = events_of(wait_for_events(sup, lambda seen: bool(events_of(seen, "worker_failed"))), "worker_failed")
    assert failed["exit_code"] == 0, failed


def test_wait_start_and_bootstrap_return_at_once_without_gate_or_bootstrap(sup: Supervisor, tmp_path: Path) -> None:
    result = tmp_path / "seen.json"
    code = "report(started=worker.wait_start(), payload=worker.bootstrap_payload())\n" \
           "worker.notify_ready()\nworker.wait_stop()\n"
    sup.configure_process_groups([py_group(code, result)])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    assert json.loads(result.read_text()) == {"started": True, "payload": None}
    sup.stop_groups(READY_TIMEOUT, True)


def test_gate_and_a_large_bootstrap_in_a_python_worker(sup: Supervisor, tmp_path: Path) -> None:
    result = tmp_path / "seen.json"
    blob = "x" * 100_000  # far over the 4096 bytes a worker may send in a line
    code = "payload = worker.bootstrap_payload()\nworker.notify_ready()\n" \
           "report(payload=payload, started=worker.wait_start())\n"
    sup.configure_process_groups([py_group(code, result, bootstrap={"blob": blob}, start_gate=True)])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    sup.start_work(["g"])
    wait_for_exit(sup)
    assert json.loads(result.read_text()) == {"payload": {"blob": blob}, "started": True}


def test_a_negative_timeout_waits_without_limit(sup: Supervisor, tmp_path: Path) -> None:
    result = tmp_path / "seen.json"
    code = "worker.notify_ready()\nstop, drain = worker.wait_stop(-1)\nreport(stop=stop, drain=drain)\n"
    sup.configure_process_groups([py_group(code, result)])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    sup.stop_groups(READY_TIMEOUT, True)
    assert json.loads(result.read_text()) == {"stop": True, "drain": True}


C_HELPERS = """\
import ctypes
from mpsupervisor._native import load_library

lib = load_library()
out = ctypes.c_void_p()
lib.check(lib.optional("mpsup_worker_bootstrap_json")(-1.0, ctypes.byref(out)))
payload = json.loads(lib.take_string(out))
lib.check(lib.optional("mpsup_worker_notify_ready")())
started = ctypes.c_bool(False)
lib.check(lib.optional("mpsup_worker_wait_start")(-1.0, ctypes.byref(started)))
lib.check(lib.optional("mpsup_worker_heartbeat")())
report(payload=payload, started=started.value)
"""


def test_c_worker_helpers_through_ctypes(sup: Supervisor, tmp_path: Path) -> None:
    result = tmp_path / "seen.json"
    sup.configure_process_groups([py_group(C_HELPERS, result, bootstrap={"k": [1, 2]}, start_gate=True)])
    sup.start_groups(["g"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    sup.start_work(["g"])
    wait_for_exit(sup)
    assert json.loads(result.read_text()) == {"payload": {"k": [1, 2]}, "started": True}
    (entry,) = sup.snapshot()["g"]
    assert entry["last_heartbeat_ms"] is not None
