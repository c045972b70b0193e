#!/usr/bin/env python3
"""Captured output under a flood: how many lines a worker writing as fast as it can gets
through to the log exporter, how many are dropped, and what the host's calls cost meanwhile.

usage: python3 bench/output_flood.py [--seconds 3] [--mode capture|file]

One worker writes 100-byte lines in 64 KiB blocks for --seconds to a captured stdout, then
writes how many lines it wrote to a file and exits 0. With --mode capture the lines become
worker.output records for a jsonl exporter writing to /dev/null (so they are formatted and
written, never stored); with --mode file they go to a rotating file (10 MB, keep 2) in a
temporary directory. Next to it, 4 workers send HEARTBEAT every 100 ms (timeout 1000 ms), and
the host times mpsup_snapshot_json every 2 ms. Prints one JSON line.
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("MPSUPERVISOR_LIBRARY", str(ROOT / "target" / "release" / "libmpsupervisor.so"))

from mpsupervisor import Supervisor  # noqa: E402

FLOOD = r"""
import os, sys, time
line = b"x" * 99 + b"\n"
block = line * 655
until = time.monotonic() + float(sys.argv[1])
lines = 0
while time.monotonic() < until:
    written = os.write(1, block)
    lines += written // 100
with open(sys.argv[2], "w") as f:
    f.write(str(lines))
"""

BEATER = r"""
import os, time
fd = int(os.environ["MPSUP_CONTROL_FD"])
os.write(fd, b"READY\n")
while True:
    os.write(fd, b"HEARTBEAT\n")
    time.sleep(0.1)
"""


def status(sup: Supervisor) -> dict:
    """mpsup_status_json through ctypes (the Python binding does not wrap it yet)."""
    lib = sup.library
    func = lib.cdll.mpsup_status_json
    func.restype = ctypes.c_uint32
    func.argtypes = [type(sup._handle()), ctypes.POINTER(ctypes.c_void_p)]
    out = ctypes.c_void_p()
    lib.check(func(sup._handle(), ctypes.byref(out)))
    return json.loads(lib.take_string(out))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--mode", choices=["capture", "file"], default="capture")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpsup-flood-") as tmp:
        count = Path(tmp) / "lines"
        stdout = "capture" if args.mode == "capture" else \
            {"file": str(Path(tmp) / "out.log"), "max_bytes": 10_000_000, "keep": 2}
        groups = [{"name": "flood", "argv": [sys.executable, "-c", FLOOD, str(args.seconds), str(count)],
                   "stdout": stdout, "control_channel": "off"},
                  {"name": "beat", "workers": 4, "argv": [sys.executable, "-c", BEATER],
                   "readiness": "notify", "heartbeat_timeout_ms": 1000}]
        calls: list[float] = []
        with Supervisor() as sup:
            sup.configure_lifecycle_logging(
                {"exporters": [{"kind": "jsonl", "settings": {"path": "/dev/null"}}]})
            sup.configure_process_groups(groups)
            sup.start_groups(["beat"])
            sup.wait_ready(30)
            started = time.monotonic()
            sup.start_groups(["flood"])
            events = []
            while not any(e["kind"] in ("worker_failed", "worker_stopped") and e["group_name"] == "flood"
                          for e in events):
                t = time.perf_counter()
                sup.snapshot()
                calls.append((time.perf_counter() - t) * 1000)
                events += sup.drain_events()
                time.sleep(0.002)
            elapsed = time.monotonic() - started
            figures = status(sup)
            heartbeat_failures = sum(1 for e in events if e["kind"] == "worker_failed"
                                     and e["group_name"] == "beat")
            sup.force_terminate_groups(["beat"])
        written = int(count.read_text())
    calls.sort()
    dropped = figures["output_lines_dropped"]
    bytes_dropped = figures["output_bytes_dropped"]
    print(json.dumps({
        "impl": f"output_flood_{args.mode}", "seconds": round(elapsed, 2),
        "written_mb_per_s": round(written * 100 / elapsed / 1e6, 1),
        "lines_written": written,
        "lines_per_s_through": round((written - dropped - bytes_dropped // 100) / elapsed),
        "lines_dropped_per_s": round(dropped / elapsed),
        "bytes_dropped": bytes_dropped,
        "snapshot_p50_ms": round(statistics.median(calls), 3),
        "snapshot_p99_ms": round(calls[len(calls) * 99 // 100], 3),
        "heartbeat_failures": heartbeat_failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
