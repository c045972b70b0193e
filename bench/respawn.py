#!/usr/bin/env python3
"""Crash -> respawn -> ready, and a start of many workers, with and without cgroups, side by
side in one run: how long after the restart policy's delay a crashed worker is ready again (from
the library's own event timestamps, ms), and how long a start + ready + stop of --start-workers
takes, for each way of placing workers (`MPSUP_CGROUP`, read when each supervisor is made):

- `none` (`MPSUP_CGROUP=0`): no cgroups, the worker's process group only;
- `move` (`MPSUP_CGROUP=move`): a cgroup per worker, which the exec shim joins by writing
  cgroup.procs (a migration: it waits for an RCU grace period when none ran just before);
- `clone` (`MPSUP_CGROUP=1`; the default where a cgroup is writable): a cgroup per worker, the
  worker born there by the spawn itself (`clone3` with CLONE_INTO_CGROUP, `src/os/born_in.rs`).

usage: python3 bench/respawn.py WORKER [--workers 20] [--delay-ms 50] [--seconds 5]
                                [--start-workers 0] [--rounds 1] [--modes none]
side by side: --modes none,move,clone --rounds 5 --seconds 10 --start-workers 300

WORKER is bench's tiny_worker: with TINY_EXIT_AFTER_MS it says READY, then exits 1. The group
restarts it on failure after exactly --delay-ms (restart_delay_max_ms caps the doubling at it).
For every worker_failed followed by that worker's next worker_ready, the overshoot is
ready.ts_ms - failed.ts_ms - delay_ms: what spawning, exec and the READY line cost on top of
the policy. The modes take turns, --rounds times (the machine's load falls on all of them).
Prints one JSON line per mode (overshoot distribution; start/stop medians with
--start-workers) and, with `none` and another mode, one of ratios against `none`. Alone (the
defaults, as bench/run.py runs it) the one line is `none`'s.
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

MODES = {"none": "0", "move": "move", "clone": "1"}


def supervisor(mode: str) -> Supervisor:
    os.environ["MPSUP_CGROUP"] = MODES[mode]
    sup = Supervisor()
    want = "process_group" if mode == "none" else "cgroup"
    got = sup.status()["guarantees"]["tree_kill"]
    if got != want:
        sys.exit(f"respawn.py: {mode}: tree_kill is {got}, not {want} (root and cgroup v2 needed)")
    return sup


def respawns(mode: str, args) -> list[int]:
    group = {"name": "r", "workers": args.workers, "argv": [args.worker], "readiness": "notify",
             "inherit_env": False, "env": {"TINY_EXIT_AFTER_MS": "100"}, "restart": "on-failure",
             "restart_delay_ms": args.delay_ms, "restart_delay_max_ms": args.delay_ms,
             "max_restarts": 100_000_000, "restart_window_ms": 1000}
    failed_at: dict[str, int] = {}
    overshoot: list[int] = []
    with supervisor(mode) as sup:
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
    return overshoot


def start_stop(mode: str, args) -> tuple[float, float]:
    """ms of start + ready, and of a graceful stop, of --start-workers tiny workers."""
    group = {"name": "s", "workers": args.start_workers, "argv": [args.worker],
             "readiness": "notify", "inherit_env": False}
    with supervisor(mode) as sup:
        sup.configure_process_groups([group])
        t0 = time.monotonic()
        sup.start_groups(["s"])
        if not sup.wait_ready(60.0):
            sys.exit(f"respawn.py: {mode}: the workers were not ready")
        t1 = time.monotonic()
        sup.stop_groups(60.0, False)
        t2 = time.monotonic()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def summary(mode: str, overshoot: list[int], starts: list[float], stops: list[float],
            delay_ms: int) -> dict:
    overshoot.sort()
    n = len(overshoot)
    return {"impl": "respawn", "mode": mode, "samples": n, "delay_ms": delay_ms,
            "p50_ms": statistics.median(overshoot) if n else None,
            "p90_ms": overshoot[n * 9 // 10] if n else None,
            "p99_ms": overshoot[n * 99 // 100] if n else None,
            "max_ms": overshoot[-1] if n else None,
            "start_ready_ms": round(statistics.median(starts), 1) if starts else None,
            "stop_ms": round(statistics.median(stops), 1) if stops else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("worker")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--delay-ms", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--start-workers", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="none")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if any(m not in MODES for m in modes):
        parser.error(f"--modes: each of {', '.join(MODES)}")
    seconds = args.seconds / args.rounds
    overshoot = {m: [] for m in modes}
    starts = {m: [] for m in modes}
    stops = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            overshoot[mode] += respawns(mode, argparse.Namespace(**{**vars(args), "seconds": seconds}))
            if args.start_workers > 0:
                start, stop = start_stop(mode, args)
                starts[mode].append(start)
                stops[mode].append(stop)
    rows = {m: summary(m, overshoot[m], starts[m], stops[m], args.delay_ms) for m in modes}
    for row in rows.values():
        print(json.dumps(row))
    if "none" in rows and len(rows) > 1 and args.start_workers > 0:
        base = rows["none"]
        print(json.dumps({"impl": "respawn_ratios", "against": "none", **{
            m: {"p50_overshoot_minus_none_ms": (r["p50_ms"] - base["p50_ms"])
                if r["p50_ms"] is not None and base["p50_ms"] is not None else None,
                "start_ready_ratio": round(r["start_ready_ms"] / base["start_ready_ms"], 2),
                "stop_ratio": round(r["stop_ms"] / base["stop_ms"], 2)}
            for m, r in rows.items() if m != "none"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
