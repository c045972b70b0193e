#!/usr/bin/env python3
"""sd_notify readiness latency: from a worker's `READY=1` datagram to `worker_ready` seen by
the host, in microseconds.

usage: python3 bench/notify_latency.py NOTIFY_WORKER [--workers 20] [--seconds 5]

NOTIFY_WORKER is bench's notify_worker: it sends "STATUS=<CLOCK_REALTIME ns>\\nREADY=1" in one
datagram, then exits 1 after 30 ms and is respawned (restart on-failure, 10 ms delay). The host
waits on the event fd; right after each drain it reads CLOCK_REALTIME, and every worker_ready of
that drain gives one sample: host time minus the time the worker put in STATUS= (the same clock
on the same machine). Prints one JSON line with the distribution.
"""

import argparse
import json
import os
import select
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
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    group = {"name": "n", "workers": args.workers, "argv": [args.worker], "readiness": "sd_notify",
             "control_channel": "off", "inherit_env": False, "restart": "on-failure",
             "restart_delay_ms": 10, "restart_delay_max_ms": 10,
             "max_restarts": 100_000_000, "restart_window_ms": 1000}
    sent: dict[str, int] = {}
    samples: list[float] = []
    with Supervisor() as sup:
        sup.configure_process_groups([group])
        poller = select.poll()
        poller.register(sup.event_fd(), select.POLLIN)
        sup.start_groups(["n"])
        until = time.monotonic() + args.seconds
        while time.monotonic() < until:
            poller.poll(100)
            events = sup.drain_events()
            seen = time.time_ns()
            for e in events:
                if e["kind"] == "worker_status":
                    sent[e["worker_id"]] = int(e["status"])
                elif e["kind"] == "worker_ready" and e["worker_id"] in sent:
                    samples.append((seen - sent.pop(e["worker_id"])) / 1000)
        sup.force_terminate_groups(["n"])
    samples.sort()
    n = len(samples)
    print(json.dumps({"impl": "notify_latency", "samples": n, "workers": args.workers,
                      "p50_us": round(statistics.median(samples), 1) if n else None,
                      "p90_us": round(samples[n * 9 // 10], 1) if n else None,
                      "p99_us": round(samples[n * 99 // 100], 1) if n else None,
                      "max_us": round(samples[-1], 1) if n else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
