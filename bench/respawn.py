#!/usr/bin/env python3
"""Crash -> respawn -> ready: how long after the restart policy's delay a crashed worker is
ready again, from the library's own event timestamps (ms).

usage: python3 bench/respawn.py WORKER [--workers 20] [--delay-ms 50] [--seconds 5]

WORKER is bench's tiny_worker: with TINY_EXIT_AFTER_MS it says READY, then exits 1. The group
restarts it on failure after exactly --delay-ms (restart_delay_max_ms caps the doubling at it).
For every worker_failed followed by that worker's next worker_ready, the overshoot is
ready.ts_ms - failed.ts_ms - delay_ms: what spawning, exec and the READY line cost on top of
the policy. Prints one JSON line with its distribution.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("MPSUPERVISOR_LIBRARY", str(ROOT / "target" / "release" / "libmpsupervisor.so"))

from mpsupervisor import Supervisor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("worker")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--delay-ms", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    group = {"name": "r", "workers": args.workers, "argv": [args.worker], "readiness": "notify",
             "inherit_env": False, "env": {"TINY_EXIT_AFTER_MS": "100"}, "restart": "on-failure",
             "restart_delay_ms": args.delay_ms, "restart_delay_max_ms": args.delay_ms,
             "max_restarts": 100_000_000, "restart_window_ms": 1000}
    failed_at: dict[str, int] = {}
    overshoot: list[int] = []
    with Supervisor() as sup:
        sup.configure_process_groups([group])
        sup.start_groups(["r"])
        until = time.monotonic() + args.seconds
        while time.monotonic() < until:
            for e in sup.drain_events():
                if e["kind"] == "worker_failed":
                    failed_at[e["worker_id"]] = e["ts_ms"]
                elif e["kind"] == "worker_ready" and e["worker_id"] in failed_at:
                    overshoot.append(e["ts_ms"] - failed_at.pop(e["worker_id"]) - args.delay_ms)
            time.sleep(0.01)
        sup.force_terminate_groups(["r"])
    overshoot.sort()
    n = len(overshoot)
    print(json.dumps({"impl": "respawn", "samples": n, "delay_ms": args.delay_ms,
                      "p50_ms": statistics.median(overshoot) if n else None,
                      "p90_ms": overshoot[n * 9 // 10] if n else None,
                      "p99_ms": overshoot[n * 99 // 100] if n else None,
                      "max_ms": overshoot[-1] if n else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
