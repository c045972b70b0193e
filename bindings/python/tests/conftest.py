"""Shared fixtures. The tests drive the real library and real worker processes.

``MPSUPERVISOR_LIBRARY`` defaults to the repository's debug build
(``target/debug/libmpsupervisor.so``; run ``cargo build`` first). The package is the
installed one when there is one, else the source tree next to this folder.
"""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
os.environ.setdefault("MPSUPERVISOR_LIBRARY", str(REPO / "target" / "debug" / "libmpsupervisor.so"))

try:
    import mpsupervisor  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent))

from mpsupervisor import MultiprocessBootstrapSupervisor, Supervisor  # noqa: E402
from mpsupervisor._native import NativeLibrary, load_library  # noqa: E402

# Workers are real processes; give them room on a loaded 2-core CI machine. These are
# upper bounds on waits that end on events, never sleeps.
READY_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def native() -> NativeLibrary:
    try:
        return load_library()
    except OSError as exc:
        pytest.fail(f"libmpsupervisor could not be loaded (run `cargo build` first): {exc}", pytrace=False)


@pytest.fixture
def sup(native: NativeLibrary) -> Iterator[Supervisor]:
    supervisor = Supervisor(native)
    try:
        yield supervisor
    finally:
        supervisor.close()


@pytest.fixture
def mp(native: NativeLibrary) -> Iterator[MultiprocessBootstrapSupervisor]:
    supervisor = MultiprocessBootstrapSupervisor(Supervisor(native))
    try:
        yield supervisor
    finally:
        supervisor.close()


def events_of(events: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    return [event for event in events if event["kind"] == kind]


def wait_for_events(
    sup: Supervisor, done: Callable[[List[Dict[str, Any]]], bool], timeout: float = READY_TIMEOUT
) -> List[Dict[str, Any]]:
    """Drain events until ``done(all_so_far)``, sleeping only in select() on the event fd."""
    fd = sup.event_fd()
    seen: List[Dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        seen.extend(sup.drain_events())
        if done(seen):
            return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"events did not arrive in {timeout}s; got {seen}")
        select.select([fd], [], [], remaining)
