"""Shared fixtures. The tests drive the real library and real worker processes.

``make test-python`` runs them against the package as pip installed it into build/venv,
with its bundled library and no ``MPSUPERVISOR_LIBRARY`` (``MPSUP_TEST_INSTALLED=1``: this
file fails the run when the package or the library comes from anywhere else). Run by hand
from a checkout without an installed package, they use the source tree and default
``MPSUPERVISOR_LIBRARY`` to the repository's debug build (``cargo build`` first).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set

import pytest

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("MPSUP_REPO") or HERE.parents[2])
INSTALLED = os.environ.get("MPSUP_TEST_INSTALLED") == "1"

try:
    import mpsupervisor
except ImportError:
    if INSTALLED:
        raise
    sys.path.insert(0, str(HERE.parent))
    os.environ.setdefault("MPSUPERVISOR_LIBRARY", str(REPO / "target" / "debug" / "libmpsupervisor.so"))
    import mpsupervisor

PACKAGE_DIR = Path(mpsupervisor.__file__).resolve().parent
if INSTALLED:
    if os.environ.get("MPSUPERVISOR_LIBRARY"):
        raise RuntimeError("MPSUP_TEST_INSTALLED=1 runs without MPSUPERVISOR_LIBRARY")
    if PACKAGE_DIR == (HERE.parent / "mpsupervisor").resolve() or "site-packages" not in PACKAGE_DIR.parts:
        raise RuntimeError(f"MPSUP_TEST_INSTALLED=1 but mpsupervisor comes from {PACKAGE_DIR}")

from mpsupervisor import MultiprocessBootstrapSupervisor, Supervisor  # noqa: E402
from mpsupervisor._native import NativeLibrary, load_library  # noqa: E402

# Workers are real processes; give them room on a loaded 2-core CI machine. These are
# upper bounds on waits that end on events, never sleeps.
READY_TIMEOUT = 30.0

# A worker that is ready through sd_notify once it holds its listen socket (descriptor 3, with
# LISTEN_PID naming it), and answers each connection with its pid and the socket's name.
LISTENER = r"""
import os, socket
assert os.environ["LISTEN_PID"] == str(os.getpid()), os.environ.get("LISTEN_PID")
server = socket.socket(fileno=3)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", "\0" + os.environ["NOTIFY_SOCKET"][1:])
while True:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()} {os.environ['LISTEN_FDNAMES']}\n".encode())
    conn.close()
"""


@pytest.fixture(scope="session")
def native() -> NativeLibrary:
    try:
        lib = load_library()
    except OSError as exc:
        pytest.fail(f"libmpsupervisor could not be loaded (run `cargo build` first): {exc}", pytrace=False)
    if INSTALLED and Path(lib.path).resolve() != PACKAGE_DIR / "libmpsupervisor.so":
        pytest.fail(f"tested {lib.path}, not the library bundled in {PACKAGE_DIR}", pytrace=False)
    return lib


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


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] not in ("Z", "X")


@pytest.fixture
def seen() -> Iterator[Set[int]]:
    """Pids a test saw; those still alive at its end are killed."""
    pids: Set[int] = set()
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
