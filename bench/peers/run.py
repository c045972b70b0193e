#!/usr/bin/env python3
"""mpsupervisor against what users would pick instead: supervisord, s6, PM2, circus, Python
multiprocessing and a bare Go os/exec loop, each running the same static worker (peer_worker.c).
Never part of the tests.

usage: python3 bench/peers/run.py [--sizes 100,1000] [--rounds 3] [--crashes 20]
                                  [--idle-size 1000] [--idle-seconds 5] [--peers a,b,...]
                                  [--smoke] [--json FILE]

For every round, every size and every peer (in an order that rotates from round to round), in a
temporary folder of its own: start N workers until all run (each reports its start on a datagram
socket), kill workers one at a time with SIGKILL until the peer has a new one running (--crashes),
at --idle-size also the PSS of the supervisor's processes and their CPU over --idle-seconds, then
stop all until every worker is reaped. Prints the medians and the ratios peer / library. A peer
not installed is skipped with a note (`make bench-peers` installs them into build/); a peer
taking over 120 s for a step is skipped at that size and above. See bench/README.md.
"""

import argparse
import importlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from common import (Listener, PeerTimeout, become_subreaper, cpu_ns, descendants,  # noqa: E402
                    pss_kib, reap_children, wait_gone)

PEERS = ["library", "go", "s6", "supervisord", "circus", "pm2", "multiprocessing"]
CRASH_AGE_S = 1.5  # a victim has run at least this long (s6 delays restarts of younger services)
SETTLE_S = 1.0  # before memory and idle CPU are read


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def build(ctx) -> None:
    """The worker (static), the library's host and the Go loop, into build/bench/."""
    ctx.build.mkdir(parents=True, exist_ok=True)
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    cc = os.environ.get("CC", "cc")
    worker = HERE / "peer_worker.c"
    if subprocess.run([cc, *flags, "-static", str(worker), "-o", str(ctx.worker)]).returncode != 0:
        log("static linking failed; peer_worker built dynamically")
        subprocess.run([cc, *flags, str(worker), "-o", str(ctx.worker)], check=True)
    lib = ROOT / "target" / "release"
    if (lib / "libmpsupervisor.so").exists():
        subprocess.run([cc, *flags, f"-I{ROOT / 'include'}", str(HERE / "peer_lib_host.c"), "-o",
                        str(ctx.build / "peer_lib_host"), f"-L{lib}", "-lmpsupervisor",
                        f"-Wl,-rpath,{lib}"], check=True)
    else:
        log(f"no {lib / 'libmpsupervisor.so'} (cargo build --release): the library is skipped")
    if subprocess.run(["sh", "-c", "command -v go"], capture_output=True).returncode == 0:
        subprocess.run(["go", "build", "-o", str(ctx.build / "peer_go_loop"), "."], cwd=HERE / "go_loop", check=True)


def short_tmp() -> str:
    """TMPDIR, unless it is too long for the sockets' paths (108 bytes) made in it: then /tmp."""
    base = tempfile.gettempdir()
    return base if len(base) <= 60 else "/tmp"


def make_peer(name: str, ctx):
    return importlib.import_module(f"p_{name}").Peer(ctx)


def run_ctx(base, tmp: str):
    return SimpleNamespace(**vars(base), tmp=tmp, sock=Path(tmp) / "ready.sock")


def supervisor_pids(peer, workers: list[int]) -> list[int]:
    not_workers = set(workers)
    return [pid for pid in descendants(peer.supervisor_roots()) if pid not in not_workers]


def idle_figures(peer, workers: list[int], seconds: float) -> dict:
    time.sleep(SETTLE_S)
    pids = supervisor_pids(peer, workers)
    pss = pss_kib(pids)
    cpu0, t0 = cpu_ns(pids), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_ns(pids), time.monotonic()
    return {"processes": len(pids), "pss_kib": pss, "idle_cpu_pct": (cpu1 - cpu0) / 1e9 / (t1 - t0) * 100}


def crash_once(peer, listener, workers: list[int], started: dict[int, float]) -> float:
    """SIGKILL the oldest worker; ms until the peer has a new one running."""
    victim = min(workers, key=lambda pid: started[pid])
    age = time.monotonic() - started[victim]
    if age < CRASH_AGE_S:
        time.sleep(CRASH_AGE_S - age)
    mark = listener.mark()
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    (stamp, pid), = listener.wait(mark, 1)
    workers.remove(victim)
    workers.append(pid)
    started[pid] = stamp
    return (stamp - t0) * 1e3


def run_one(name: str, n: int, base, args, idle: bool) -> dict:
    """One peer at one size, in a temporary folder of its own; nothing it started outlives it."""
    out: dict = {}
    workers: list[int] = []
    with tempfile.TemporaryDirectory(prefix=f"peers-{name}-", dir=short_tmp()) as tmp:
        ctx = run_ctx(base, tmp)
        listener = Listener(ctx.sock)
        peer = make_peer(name, ctx)
        try:
            peer.prepare(n)
            mark = listener.mark()
            t0 = time.monotonic()
            peer.start()
            t_cmd = time.monotonic()
            got = listener.wait(mark, n) if n else []
            workers = [pid for _, pid in got]
            started = {pid: stamp for stamp, pid in got}
            out["start_ms"] = (max([t_cmd] + [stamp for stamp, _ in got]) - t0) * 1e3
            peer.tick()
            if idle:
                out.update(idle_figures(peer, workers, args.idle_seconds))
            if n == 0:
                return out
            out["crash_ms"] = [crash_once(peer, listener, workers, started) for _ in range(args.crashes)]
            peer.tick()
            t0 = time.monotonic()
            peer.stop()
            t_cmd = time.monotonic()
            out["stop_ms"] = (max(t_cmd, wait_gone(workers)) - t0) * 1e3
            workers = []
            return out
        finally:
            try:
                peer.close(workers)
            finally:
                listener.close()
                reap_children()


def run_all(args, base) -> tuple[dict, dict, dict]:
    """results[(peer, n)] = list of runs; baselines[peer] = idle PSS with no worker; notes[peer]."""
    results: dict = {}
    notes: dict = {}
    baselines: dict = {}
    too_slow: dict = {}  # peer -> smallest N at which it took over the limit
    for name in args.peers:
        with tempfile.TemporaryDirectory(prefix="peers-check-") as tmp:
            reason = make_peer(name, run_ctx(base, tmp)).missing()
        if reason:
            notes[name] = f"skipped: {reason}"
            log(f"{name}: {notes[name]}")
    peers = [p for p in args.peers if p not in notes]
    if args.idle_size in args.sizes:
        for name in peers:
            try:
                baselines[name] = run_one(name, 0, base, args, idle=True)
                log(f"{name}: idle with no worker, {baselines[name]['pss_kib']:,} KiB PSS")
            except Exception as exc:  # noqa: BLE001 - reported, and the peer's rows go on without it
                log(f"{name}: baseline FAILED: {exc}")
    for r in range(args.rounds):
        for n in args.sizes:
            shift = r % len(peers) if peers else 0
            for name in peers[shift:] + peers[:shift]:
                if name in too_slow and n >= too_slow[name]:
                    continue
                try:
                    out = run_one(name, n, base, args, idle=n == args.idle_size)
                except PeerTimeout as exc:
                    too_slow[name] = n
                    notes[name] = f"skipped from N = {n:,}: {exc} (limit 120 s a step)"
                    log(f"round {r + 1} N={n} {name}: {notes[name]}")
                    results.setdefault((name, n), []).append({"error": str(exc)})
                    continue
                except Exception as exc:  # noqa: BLE001 - one failed run must not end the bench
                    log(f"round {r + 1} N={n} {name}: FAILED: {exc}")
                    results.setdefault((name, n), []).append({"error": str(exc)})
                    continue
                log(f"round {r + 1}/{args.rounds} N={n} {name}: start {out['start_ms']:.0f} ms, "
                    f"stop {out['stop_ms']:.0f} ms, crash {statistics.median(out['crash_ms']) if out['crash_ms'] else 0:.1f} ms")
                results.setdefault((name, n), []).append(out)
    return results, baselines, notes


def medians(runs: list[dict], baseline: dict | None, n: int) -> dict | None:
    good = [run for run in runs if "error" not in run]
    if not good:
        return None
    row = {"runs": len(good), "failed": len(runs) - len(good)}
    for key in ("start_ms", "stop_ms"):
        row[key] = statistics.median(run[key] for run in good)
    crashes = [ms for run in good for ms in run["crash_ms"]]
    row["crash_ms"] = statistics.median(crashes) if crashes else None
    row["crashes"] = len(crashes)
    if all("pss_kib" in run for run in good):
        row["pss_kib"] = statistics.median(run["pss_kib"] for run in good)
        row["processes"] = statistics.median(run["processes"] for run in good)
        row["idle_cpu_pct"] = statistics.median(run["idle_cpu_pct"] for run in good)
        if baseline:
            row["own_kib"] = row["pss_kib"] - baseline["pss_kib"]
            row["per_worker_kib"] = row["own_kib"] / n
    return row


def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "–"
    x = a / b
    return f"{x:.2f}×" if x < 10 else f"{x:,.0f}×"


def tables(args, results, baselines, notes) -> str:
    rows = {key: medians(runs, baselines.get(key[0]), key[1]) for key, runs in results.items()}
    lines = ["| N | supervisor | start ms | stop ms | crash → running ms | start / library | "
             "stop / library | crash / library | runs |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in args.sizes:
        lib = rows.get(("library", n))
        for name in args.peers:
            if (name, n) not in results:
                continue
            row = rows[(name, n)]
            label = importlib.import_module(f"p_{name}").Peer.label
            if row is None:
                lines.append(f"| {n:,} | {label} | failed | | | | | | 0 of {len(results[(name, n)])} |")
                continue
            failed = f", {row['failed']} failed" if row["failed"] else ""
            cells = [fmt(row["start_ms"]), fmt(row["stop_ms"]), fmt(row["crash_ms"])]
            if lib and name != "library":
                cells += [ratio(row[k], lib[k]) for k in ("start_ms", "stop_ms", "crash_ms")]
            else:
                cells += ["", "", ""]
            lines.append(f"| {n:,} | {label} | {' | '.join(cells)} | {row['runs']}{failed} "
                         f"({row['crashes']} crashes) |")
    n = args.idle_size
    if any(("pss_kib" in (rows.get((name, n)) or {})) for name in args.peers):
        lib = rows.get(("library", n)) or {}
        lines += ["", f"| N = {n:,} | processes | PSS MB | idle baseline MB | own MB | own KiB per worker | "
                  "own / library | idle CPU % of a core |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in args.peers:
            row = rows.get((name, n))
            if not row or "pss_kib" not in row:
                continue
            base = baselines.get(name)
            label = importlib.import_module(f"p_{name}").Peer.label
            own = row.get("own_kib")
            lines.append(f"| {label} | {row['processes']:,.0f} | {fmt(row['pss_kib'] / 1024)} | "
                         f"{fmt(base['pss_kib'] / 1024) if base else '–'} | "
                         f"{fmt(own / 1024) if own is not None else '–'} | {fmt(row.get('per_worker_kib'))} | "
                         f"{ratio(own, lib.get('own_kib')) if name != 'library' else ''} | "
                         f"{row['idle_cpu_pct']:.3f} |")
    for name, note in notes.items():
        lines.append(f"\n- {name}: {note}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crashes", type=int, default=20)
    parser.add_argument("--idle-size", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--peers", type=lambda s: [p for p in s.split(",") if p], default=PEERS)
    parser.add_argument("--smoke", action="store_true",
                        help="N = 5, 1 round, 3 crashes, the library (if built), multiprocessing and Go only")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.rounds, args.crashes, args.idle_size, args.idle_seconds = [5], 1, 3, 5, 0.2
        args.peers = [p for p in ("library", "multiprocessing", "go") if p in args.peers]
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")

    # SIGTERM ends the driver through its finally blocks, like Ctrl-C: nothing it started survives.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench/peers: terminated"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the peers inherit it
    become_subreaper()
    base = SimpleNamespace(build=ROOT / "build" / "bench", venv=ROOT / "build" / "peers-venv",
                           npm=ROOT / "build" / "peers-npm", nofile=hard)
    base.worker = base.build / "peer_worker"
    if not args.no_build:
        build(base)
    started = time.monotonic()
    results, baselines, notes = run_all(args, base)
    print(f"\n### supervisors side by side: medians of {args.rounds} alternating rounds, {os.cpu_count()} CPUs, "
          f"{args.crashes} crashes a run, idle figures over {args.idle_seconds:g} s\n")
    print(tables(args, results, baselines, notes))
    print(f"\n_bench time {time.monotonic() - started:.0f} s_")
    if args.json:
        args.json.write_text(json.dumps({"baselines": baselines, "notes": notes, "runs": [
            {"peer": p, "n": n, "results": r} for (p, n), r in results.items()]}, indent=1))
    failed = [key for key, runs in results.items() if any("error" in run for run in runs)]
    return 1 if failed and args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
