"""The original Python design, reduced to what the benchmark measures.

The stream_kernel `MultiprocessBootstrapSupervisor` spawned one `multiprocessing`
process per worker from the `spawn` context, each with its own `Event` as the stop
signal; `wait_ready` declared every worker ready once all were alive 20 ms after
`start_groups` began (polling every 10 ms); `stop_groups` set every Event and
joined every process. This script does exactly that for N workers whose loop,
like the original's, checks its Event every 50 ms (`Event.wait(0.05)` returns at
once when the Event is set, so the loop adds no stop latency).

usage: python3 bench/original_design.py N
prints one JSON line: {"impl":"original","n":N,"start_ms":..,"ready_ms":..,"stop_ms":..,"total_ms":..,
"cpu_ms":..}, cpu_ms being the CPU time of this process and its reaped workers.
"""

import json
import multiprocessing as mp
import resource
import sys
import time

READY_AFTER_SECONDS = 0.02  # the original's _ready_after_seconds
READY_POLL_SECONDS = 0.01  # the original's wait_ready sleep


def worker_loop(stop_event) -> None:
    while not stop_event.wait(0.05):
        pass


def start_groups(ctx, n: int) -> list:
    handles = []
    for index in range(n):
        stop_event = ctx.Event()
        process = ctx.Process(target=worker_loop, args=(stop_event,), name=f"bench#{index + 1}", daemon=True)
        process.start()
        handles.append((process, stop_event))
    return handles


def wait_ready(handles: list, start_ts: float, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not all(process.is_alive() for process, _ in handles):
            return False
        if time.monotonic() - start_ts >= READY_AFTER_SECONDS:
            return True
        time.sleep(READY_POLL_SECONDS)
    return False


def stop_groups(handles: list, graceful_timeout_seconds: float) -> None:
    for _, stop_event in handles:
        stop_event.set()
    deadline = time.monotonic() + graceful_timeout_seconds
    for process, _ in handles:
        process.join(timeout=max(0.01, deadline - time.monotonic()))
        if process.is_alive():
            raise TimeoutError(f"worker '{process.name}' did not stop within graceful timeout")


def tree_cpu_ms() -> float:
    """CPU time (user + system) of this process and its reaped children."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage) * 1e3


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        print("usage: original_design.py N", file=sys.stderr)
        return 2
    n = int(sys.argv[1])

    t0 = time.monotonic()
    ctx = mp.get_context("spawn")
    handles = start_groups(ctx, n)
    t_started = time.monotonic()
    if not wait_ready(handles, t0, 60.0):
        print("original_design: a worker died before it was ready", file=sys.stderr)
        return 1
    t_ready = time.monotonic()
    stop_groups(handles, 60.0)
    t_end = time.monotonic()

    bad = sum(1 for process, _ in handles if process.exitcode != 0)
    if bad:
        print(f"original_design: {bad} workers did not exit 0", file=sys.stderr)
        return 1
    ms = lambda a, b: round((b - a) * 1e3, 3)  # noqa: E731
    print(json.dumps({"impl": "original", "n": n, "start_ms": ms(t0, t_started), "ready_ms": ms(t_started, t_ready),
                      "stop_ms": ms(t_ready, t_end), "total_ms": ms(t0, t_end), "cpu_ms": round(tree_cpu_ms(), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
