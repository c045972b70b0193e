#!/usr/bin/env python3
"""Host calls while probes run: N tiny workers, each with a TCP readiness probe every P ms,
against the same N workers without probes, in one process (a ratio, not a target).

usage: python3 bench/probes.py WORKER [--workers 1000] [--period-ms 100] [--seconds 5] [--accept]

WORKER is bench's tiny_worker (`python3 bench/run.py --quick` builds build/bench/tiny_worker).
By default every probe connects to a port bound but not listening (the kernel refuses it: no
server competes for the CPU; failure_threshold 1000 keeps the workers ready meanwhile);
with --accept, to one listener whose connections a child process accepts and closes. In each phase the host times `snapshot` and `status` (the C calls `mpsup_snapshot_json`, `mpsup_status_json`) every 2 ms for
--seconds once every worker is ready; the probe phase also counts the connections accepted
and the process's CPU time (its own threads and the library's). Prints one JSON line: p50 and
p99 of the calls in each phase, their ratio, the connections accepted, and CPU µs per probe.
"""

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("MPSUPERVISOR_LIBRARY", str(ROOT / "target" / "release" / "libmpsupervisor.so"))

from mpsupervisor import Supervisor  # noqa: E402


# Accepts and closes every connection on the listener whose fd is argv[1] until SIGTERM, then
# prints how many it accepted. A process of its own, so that its work does not take the host's
# GIL (nor count in the host's CPU time).
ACCEPT = r"""
import signal, socket, sys
done = []
signal.signal(signal.SIGTERM, lambda *a: done.append(1))
s = socket.socket(fileno=int(sys.argv[1]))
s.settimeout(0.1)
n = 0
while not done:
    try:
        s.accept()[0].close()
        n += 1
    except (socket.timeout, InterruptedError):
        pass
print(n)
"""


class Listener:
    """A listener on 127.0.0.1 (a free port) served by a child process that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        self.child = subprocess.Popen([sys.executable, "-c", ACCEPT, str(fd)], pass_fds=[fd],
                                      stdout=subprocess.PIPE, text=True)

    def close(self) -> int:
        """Ends the child; how many connections it accepted."""
        self.child.send_signal(signal.SIGTERM)
        out, _ = self.child.communicate(timeout=30)
        self.sock.close()
        return int(out.strip())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase(worker: str, workers: int, probe: dict | None, seconds: float) -> dict:
    group = {"name": "p", "workers": workers, "argv": [worker], "readiness": "notify",
             "inherit_env": False}
    if probe:
        group["readiness_probe"] = probe
    samples: list[float] = []
    with Supervisor() as sup:
        sup.configure_process_groups([group])
        sup.start_groups(["p"])
        if not sup.wait_ready(120):
            sys.exit("the workers did not become ready")
        cpu0, until = cpu_seconds(), time.monotonic() + seconds
        while time.monotonic() < until:
            for call in (sup.snapshot, sup.status):
                t0 = time.perf_counter()
                call()
                samples.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.002)
        cpu = cpu_seconds() - cpu0
        unready = sum(1 for e in sup.drain_events() if e["kind"] == "worker_unready")
        sup.stop_groups(60, False)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[len(samples) * 99 // 100], 3),
            "calls": len(samples), "cpu_s": round(cpu, 3), "unready": unready}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("worker")
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--period-ms", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accept", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = phase(args.worker, args.workers, None, args.seconds)
    if args.accept:
        listener = Listener()
        port = listener.port
    else:
        # Bound, so nobody else listens there, and not listening: every connection is refused.
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # A threshold that the refused probes do not reach during the run: the workers stay ready.
    probe = {"tcp": f"127.0.0.1:{port}", "period_ms": args.period_ms, "failure_threshold": 1000}
    probed = phase(args.worker, args.workers, probe, args.seconds)
    # Over the whole phase (start and stop included), not only its measured seconds.
    accepted = listener.close() if args.accept else None
    if not args.accept:
        closed.close()
    print(json.dumps({
        "impl": "probes", "target": "accepted" if args.accept else "refused", "workers": args.workers, "period_ms": args.period_ms,
        "baseline": base, "probed": probed,
        "p50_ratio": round(probed["p50_ms"] / base["p50_ms"], 2),
        "p99_ratio": round(probed["p99_ms"] / base["p99_ms"], 2),
        "accepted": accepted,
        # The host process's CPU during the measured seconds, over what the baseline used, per
        # probe run in them (about workers * seconds * 1000 / period_ms).
        "cpu_us_per_probe": round((probed["cpu_s"] - base["cpu_s"]) * 1e6
                                  / (args.workers * args.seconds * 1000 / args.period_ms), 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
