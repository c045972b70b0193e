#!/usr/bin/env python3
"""From a dependency's `READY=1` to its dependent's first process running, in microseconds.

usage: python3 bench/depends_latency.py NOTIFY_WORKER [--rounds 50]

NOTIFY_WORKER is bench's notify_worker: at its start it sends "STATUS=<CLOCK_REALTIME ns>\\nREADY=1"
in one datagram. Each round configures `db` and `web` (one worker each, both notify_worker, `web`
with `depends_on: {"db": "ready"}`), calls start_groups(["web"]), and waits for both workers'
`worker_status`: web's time minus db's is what the engine takes from db's READY datagram to web's
program running (the monitor reads the datagram, the core finds web's condition holds and asks
for the spawn, the spawner spawns, web's exec). The baseline, in the same round: from the
start_groups call to db's program running (the spawn path alone). Prints one JSON line with
both distributions and the ratio of medians.
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

ROUND_TIMEOUT_S = 10.0


def groups(worker: str) -> list[dict]:
    common = {"argv": [worker], "readiness": "sd_notify", "control_channel": "off",
              "inherit_env": False, "env": {"NOTIFY_EXIT_AFTER_MS": "60000"}}
    return [{"name": "db", **common},
            {"name": "web", **common, "depends_on": {"db": "ready"}}]


def one_round(sup: Supervisor, poller: select.poll) -> tuple[float, float]:
    """(start_groups -> db running, db READY -> web running), in µs."""
    status: dict[str, int] = {}
    called = time.time_ns()
    sup.start_groups(["web"])
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while len(status) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker_status from both groups in {ROUND_TIMEOUT_S} s")
        poller.poll(100)
        for e in sup.drain_events():
            if e["kind"] == "worker_status":
                status[e["group_name"]] = int(e["status"])
    sup.force_terminate_groups(["web", "db"])
    return (status["db"] - called) / 1000, (status["web"] - status["db"]) / 1000


def summary(samples: list[float]) -> dict:
    samples = sorted(samples)
    n = len(samples)
    return {"p50_us": round(statistics.median(samples), 1), "p90_us": round(samples[n * 9 // 10], 1),
            "p99_us": round(samples[n * 99 // 100], 1), "max_us": round(samples[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("worker")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    spawn, dependency = [], []
    with Supervisor() as sup:
        sup.configure_process_groups(groups(args.worker))
        poller = select.poll()
        poller.register(sup.event_fd(), select.POLLIN)
        for _ in range(args.rounds):
            first, second = one_round(sup, poller)
            spawn.append(first)
            dependency.append(second)
    out = {"impl": "depends_latency", "rounds": args.rounds,
           "ready_to_dependent": summary(dependency), "start_to_first": summary(spawn)}
    out["ratio_p50"] = round(out["ready_to_dependent"]["p50_us"] / out["start_to_first"]["p50_us"], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
