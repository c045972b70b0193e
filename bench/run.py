#!/usr/bin/env python3
"""Benchmark suite: the floor (bare kernel work), the best floor (the same with the library's
own tricks: spawner threads in descriptor tables of their own), the library (C API) and the
original Python design, N notify-readiness tiny workers each. Never part of the tests.

usage: python3 bench/run.py [--quick] [--rounds R] [--sizes 100,1000,5000]
                            [--original-sizes 100] [--idle-seconds 5] [--idle-workers 1000]
                            [--no-cargo] [--json FILE]

Builds the C programs into build/bench/ (and the library with `cargo build --release`
unless --no-cargo), runs R alternating rounds of every program for every N as children
of this process, and prints one markdown table of medians plus the idle, memory and
descriptor lines. See bench/README.md.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUILD = ROOT / "build" / "bench"
LIBDIR = ROOT / "target" / "release"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
PHASES = ["start_ms", "ready_ms", "stop_ms", "total_ms", "cpu_ms"]
LABELS = {"floor": "floor (C, no library)", "floor_threads": "best floor (C, threads, own tables)",
          "library": "library (C API)",
          "identity": "library, identity keys", "original": "original (Python spawn)"}
RUN_TIMEOUT_S = 600
# The floor makes no cgroups, so the library is compared with it without them; what cgroups
# (the library's default where writable) cost is measured on its own (`respawn.py`, below).
os.environ["MPSUP_CGROUP"] = "0"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def cc(sources: list[str], output: Path, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [os.environ.get("CC", "cc"), *CFLAGS, *[str(BENCH / s) for s in sources], "-o", str(output), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def build(cargo: bool) -> dict:
    """Build everything; returns notes about what was built and how."""
    BUILD.mkdir(parents=True, exist_ok=True)
    notes = {}
    if cargo:
        log("building the library: cargo build --release")
        result = subprocess.run(["cargo", "build", "--release"], cwd=ROOT)
        if result.returncode != 0:
            sys.exit("cargo build --release failed")

    result = cc(["tiny_worker.c"], BUILD / "tiny_worker", ["-static"])
    notes["worker_linking"] = "static"
    if result.returncode != 0:
        log("static linking failed, building tiny_worker dynamically:\n" + result.stderr)
        result = cc(["tiny_worker.c"], BUILD / "tiny_worker", [])
        notes["worker_linking"] = "dynamic (static glibc unavailable)"
    if result.returncode != 0:
        sys.exit("building tiny_worker failed:\n" + result.stderr)

    result = cc(["notify_worker.c"], BUILD / "notify_worker", [])
    if result.returncode != 0:
        sys.exit("building notify_worker failed:\n" + result.stderr)

    result = cc(["floor.c"], BUILD / "floor", [])
    if result.returncode != 0:
        sys.exit("building floor failed:\n" + result.stderr)

    result = cc(["floor_threads.c"], BUILD / "floor_threads", ["-lpthread"])
    if result.returncode != 0:
        sys.exit("building floor_threads failed:\n" + result.stderr)

    header, library = ROOT / "include" / "mpsupervisor.h", LIBDIR / "libmpsupervisor.so"
    notes["library"] = header.exists() and library.exists()
    if notes["library"]:
        link = [f"-I{ROOT / 'include'}", f"-L{LIBDIR}", "-lmpsupervisor", f"-Wl,-rpath,{LIBDIR}"]
        for program in ("lib_bench", "crash_loop", "handover_bench", "probe_load"):
            result = cc([f"{program}.c"], BUILD / program, link + ["-lpthread"])
            if result.returncode != 0:
                sys.exit(f"building {program} failed:\n" + result.stderr)
    else:
        log(f"no {header} or {library}: the library rows are skipped")
    return notes


def run_json(cmd: list[str], impl: str | None = None) -> dict:
    """Run one bench program; returns its last JSON stdout line (of that `impl`, if given)."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if result.returncode != 0:
        program = Path(cmd[1] if cmd[0] == sys.executable else cmd[0]).name
        raise RuntimeError(f"{program} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    outputs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [out for out in outputs if impl is None or out.get("impl") == impl][-1]


def command(program: str, n: int) -> list[str]:
    worker = str(BUILD / "tiny_worker")
    if program in ("floor", "floor_threads"):
        return [str(BUILD / program), worker, str(n)]
    if program == "library":
        return [str(BUILD / "lib_bench"), worker, str(n)]
    if program == "identity":
        return [str(BUILD / "lib_bench"), "--identity", worker, str(n)]
    return [sys.executable, str(BENCH / "original_design.py"), str(n)]


def run_rounds(args, with_library: bool) -> dict:
    """results[(program, n)] = list of JSON results; rounds alternate the program order."""
    results: dict = {}
    for r in range(args.rounds):
        for n in args.sizes:
            programs = ["floor", "floor_threads"] + (["library", "identity"] if with_library else [])
            if n in args.original_sizes:
                programs.append("original")
            shift = r % len(programs)
            for program in programs[shift:] + programs[:shift]:
                wait_quiet()
                try:
                    out = run_json(command(program, n))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                    log(f"round {r + 1}/{args.rounds} N={n} {program}: FAILED: {exc}")
                    results.setdefault((program, n), []).append({"error": str(exc)})
                    continue
                log(f"round {r + 1}/{args.rounds} N={n} {program}: total {out['total_ms']:.1f} ms")
                results.setdefault((program, n), []).append(out)
    return results


def medians(runs: list[dict]) -> dict | None:
    good = [run for run in runs if "error" not in run]
    if not good:
        return None
    row = {phase: statistics.median(run[phase] for run in good) for phase in PHASES}
    # The supervisor's own CPU time during the stop (floor and library only).
    if all("stop_self_cpu_ms" in run for run in good):
        row["stop_self_cpu_ms"] = statistics.median(run["stop_self_cpu_ms"] for run in good)
    row["min"] = min(run["total_ms"] for run in good)
    row["max"] = max(run["total_ms"] for run in good)
    row["runs"], row["failed"] = len(good), len(runs) - len(good)
    return row


def fmt_ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def fmt_ratio(a: dict | None, b: dict | None, phase: str) -> str:
    if not a or not b or b[phase] <= 0:
        return "–"
    ratio = a[phase] / b[phase]
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def table(args, results: dict) -> tuple[str, dict]:
    lines = ["| N | program | start ms | ready ms | stop ms | total ms | CPU ms | total min–max (runs) |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    rows = {}
    for n in args.sizes:
        for program in ("floor", "floor_threads", "library", "identity", "original"):
            if (program, n) not in results:
                continue
            row = rows[(program, n)] = medians(results[(program, n)])
            if row is None:
                blanks = " |" * (len(PHASES) - 1)
                lines.append(f"| {n:,} | {LABELS[program]} | failed |{blanks} 0 of {len(results[(program, n)])} |")
                continue
            failed = f", {row['failed']} failed" if row["failed"] else ""
            cells = " | ".join(fmt_ms(row[phase]) for phase in PHASES)
            lines.append(f"| {n:,} | {LABELS[program]} | {cells} | "
                         f"{fmt_ms(row['min'])}–{fmt_ms(row['max'])} ({row['runs']}{failed}) |")
        for label, a, b in (("library / floor", "library", "floor"),
                            ("library / best floor", "library", "floor_threads"),
                            ("identity / library", "identity", "library"),
                            ("original / library", "original", "library")):
            if (a, n) in rows and (b, n) in rows:
                cells = " | ".join(fmt_ratio(rows[(a, n)], rows[(b, n)], phase) for phase in PHASES)
                lines.append(f"| {n:,} | **{label}** | {cells} | |")
    return "\n".join(lines), rows


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy the CPUs were over `seconds` while this script slept (0..1), from /proc/stat."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    (all0, idle0), _, (all1, idle1) = sample(), time.sleep(seconds), sample()
    return 1 - (idle1 - idle0) / max(1, all1 - all0)


def wait_quiet(max_wait: float = 10.0) -> None:
    """Wait (up to max_wait s) until the CPUs are idle, so that one run's teardown or another
    program on the machine does not land in the next run."""
    deadline = time.monotonic() + max_wait
    while busy_fraction(0.3) > 0.05:
        if time.monotonic() > deadline:
            log("warning: the machine stayed busy; running anyway")
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, N=100,1000, 1 s idle")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=parse_sizes, default=[100, 1000, 5000])
    parser.add_argument("--original-sizes", type=parse_sizes, default=[100],
                        help="N for which the Python original also runs (each of its workers is a Python interpreter)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--idle-workers", type=int, default=1000)
    parser.add_argument("--no-cargo", action="store_true", help="do not run cargo build --release first")
    parser.add_argument("--json", type=Path, help="also write every raw result to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sizes, args.idle_seconds = 2, [100, 1000], 1.0

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    notes = build(cargo=not args.no_cargo and shutil.which("cargo") is not None)

    busy = busy_fraction()
    if busy > 0.1:
        log(f"warning: the CPUs were {busy:.0%} busy before the bench started; expect noisy results")
    started = time.monotonic()
    results = run_rounds(args, notes["library"])
    idle = None
    if notes["library"]:
        wait_quiet()
        try:
            idle = run_json([str(BUILD / "lib_bench"), "--idle", str(args.idle_seconds),
                             str(BUILD / "tiny_worker"), str(args.idle_workers)], impl="library-idle")
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            log(f"idle run FAILED: {exc}")

    engine = run_engine(args) if notes["library"] else {}

    text, rows = table(args, results)
    print(f"\n### mpsupervisor benchmark: medians of {args.rounds} alternating rounds, "
          f"{os.cpu_count()} CPUs ({busy:.0%} busy before), tiny worker linked {notes['worker_linking']}\n")
    print(text)
    print()
    if idle:
        print(f"- idle: {idle['n']:,} ready workers for {idle['idle_s']:.1f} s cost the supervisor process "
              f"{idle['idle_cpu_ms']:.2f} ms CPU = {idle['idle_cpu_pct']:.3f} % of one core "
              f"(all {idle['threads']} threads, host thread asleep)")
        print(f"- memory per worker: {idle['heap_per_worker_b']:,.0f} B heap with its events undrained, "
              f"{idle['heap_per_worker_drained_b']:,.0f} B after draining them; "
              f"{idle['rss_per_worker_b']:,.0f} B resident (VmRSS delta / N)")
        print(f"- descriptors per worker: library {idle['fds_per_worker']:.2f} "
              f"({idle['fds_before']} open before start, {idle['fds_ready']} with {idle['n']:,} ready), floor 1")
    raised = f"raised from {soft:,} to the hard limit" if soft < hard else "already at the hard limit"
    need = f"; {max(args.sizes):,} workers need about " \
        f"{idle['fds_before'] + idle['fds_per_worker'] * max(args.sizes):,.0f}" if idle else ""
    print(f"- RLIMIT_NOFILE soft limit for every child: {hard:,} ({raised}){need}")
    print_engine(engine)
    print(targets(rows, idle, engine, args))
    print(f"\n_bench time {time.monotonic() - started:.0f} s_")
    if args.json:
        args.json.write_text(json.dumps({"notes": notes, "idle": idle, "runs": [
            {"program": p, "n": n, "results": r} for (p, n), r in results.items()]}, indent=1))
    return 0


def run_engine(args) -> dict:
    """The engine's figures: host calls during a crash loop, and crash -> respawn -> ready."""
    out = {}
    worker = str(BUILD / "tiny_worker")
    crashers, beaters, seconds = (100, 30, 2) if args.quick else (300, 100, 5)
    wait_quiet()
    try:
        out["crash"] = run_json([str(BUILD / "crash_loop"), worker, str(crashers), str(beaters), str(seconds)])
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        log(f"crash-loop run FAILED: {exc}")
    wait_quiet()
    # quick: a smoke run of the same program; full: the 1,000 workers next to the loop.
    probed = ["200", "100", "1"] if args.quick else ["1000", str(crashers), "5"]
    try:
        out["probes"] = run_json([str(BUILD / "probe_load"), worker, *probed, "100"], impl="probe_load")
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        log(f"probe-load run FAILED: {exc}")
    wait_quiet()
    env = dict(os.environ, MPSUPERVISOR_LIBRARY=str(LIBDIR / "libmpsupervisor.so"))
    # Without cgroups and with them (each worker born in its own), side by side.
    respawn_args = ["--modes", "none,clone", "--start-workers", "300" if args.quick else "1000",
                    "--rounds", "1" if args.quick else "3", "--seconds", str(2 if args.quick else 9)]
    try:
        result = subprocess.run([sys.executable, str(BENCH / "respawn.py"), worker, *respawn_args],
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip()[-500:])
        rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
        out["respawn"] = next(r for r in rows if r.get("mode") == "none")
        out["cgroups"] = {"clone": next(r for r in rows if r.get("mode") == "clone"),
                          **next(r for r in rows if r["impl"] == "respawn_ratios")["clone"]}
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError, StopIteration) as exc:
        log(f"respawn run FAILED: {exc}")
    for n in [10, 1000] if args.quick else [10, 1000, 5000]:
        wait_quiet()
        try:
            out.setdefault("handover", []).append(
                run_json([str(BUILD / "handover_bench"), worker, str(n), "5"], impl="handover"))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            log(f"handover N={n} run FAILED: {exc}")
    seconds = "2" if args.quick else "5"
    python_runs = [("notify", [str(BENCH / "notify_latency.py"), str(BUILD / "notify_worker"), "--seconds", seconds]),
                   ("flood", [str(BENCH / "output_flood.py"), "--seconds", seconds]),
                   ("flood_file", [str(BENCH / "output_flood.py"), "--seconds", seconds, "--mode", "file"])]
    for name, cmd in python_runs:
        wait_quiet()
        try:
            result = subprocess.run([sys.executable, *cmd], capture_output=True, text=True,
                                    timeout=RUN_TIMEOUT_S, env=env)
            if result.returncode != 0:
                raise RuntimeError(result.stderr.strip()[-500:])
            out[name] = json.loads(result.stdout.strip().splitlines()[-1])
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            log(f"{name} run FAILED: {exc}")
    return out


def print_engine(engine: dict) -> None:
    for h in engine.get("handover", []):
        print(f"- handover of {h['n']:,} workers (prepare + exec + adopt, median of {h['rounds']}): "
              f"{h['total_ms']:.1f} ms (prepare {h['prepare_ms']:.1f}, exec {h['exec_ms']:.1f}, adopt "
              f"{h['adopt_ms']:.1f}; max {h['total_max_ms']:.1f}); longest gap in event delivery "
              f"{h['gap_ms']:.1f} ms (max {h['gap_max_ms']:.1f}); state {h['state_bytes']:,} bytes")
    crash, respawn = engine.get("crash"), engine.get("respawn")
    if crash:
        ratio = crash["p99_ms"] / crash["baseline_p99_ms"] if crash["baseline_p99_ms"] > 0 else float("nan")
        print(f"- host calls (snapshot + drain) while {crash['crashers']} workers crash-loop next to "
              f"{crash['beaters']} heartbeat workers: median {crash['p50_ms']:.2f} ms, p99 "
              f"{crash['p99_ms']:.2f} ms, max {crash['max_ms']:.2f} ms over {crash['calls']:,} calls "
              f"({crash['respawns']:,} respawns); baseline without the crash loop, same process: p99 "
              f"{crash['baseline_p99_ms']:.2f} ms (ratio {ratio:.1f}×); false heartbeat failures: "
              f"{crash['false_heartbeat_failures']}")
    probes = engine.get("probes")
    if probes:
        b, p = probes["baseline"], probes["probed"]
        print(f"- host calls (snapshot + drain) with {probes['workers']:,} workers next to {probes['crashers']} "
              f"crash-looping ones: without probes p50 {b['p50_ms']:.2f} / p99 {b['p99_ms']:.2f} / max "
              f"{b['max_ms']:.2f} ms; with a TCP readiness probe every {probes['period_ms']} ms on each "
              f"({probes['target']} target, {probes['probes_made']:,.0f} probes) p50 {p['p50_ms']:.2f} / p99 "
              f"{p['p99_ms']:.2f} / max {p['max_ms']:.2f} ms (p99 ratio {probes['p99_ratio']:.2f}); CPU per "
              f"probe on the library's probe thread {probes['lib_thread_us_per_probe']:.1f} µs against "
              f"{probes['bare_thread_us_per_connect']:.1f} µs per connect of a bare C epoll loop's thread: "
              f"{probes['lib_over_bare']:.2f}× (whole process over the baseline: {probes['lib_process_us_per_probe']:.1f} "
              f"against {probes['bare_process_us_per_connect']:.1f} µs)")
        print(f"  (where the probed phase's slow calls' time went, p99 of each: own CPU {p['own_cpu_p99_ms']:.2f} ms, "
              f"waiting for a CPU {p['queued_p99_ms']:.2f} ms, blocked {p['blocked_p99_ms']:.2f} ms; baseline "
              f"{b['own_cpu_p99_ms']:.2f} / {b['queued_p99_ms']:.2f} / {b['blocked_p99_ms']:.2f} ms)")
    if respawn:
        print(f"- crash -> respawn -> ready, past the policy's {respawn['delay_ms']} ms delay "
              f"({respawn['samples']} respawns, event timestamps in ms): median {respawn['p50_ms']} ms, "
              f"p90 {respawn['p90_ms']} ms, p99 {respawn['p99_ms']} ms, max {respawn['max_ms']} ms")
    cgroups = engine.get("cgroups")
    if cgroups:
        c = cgroups["clone"]
        print(f"- with a cgroup per worker (the default where writable) against MPSUP_CGROUP=0, same run: "
              f"crash -> ready median {c['p50_ms']} ms ({cgroups['p50_overshoot_minus_none_ms']:+} ms), "
              f"start + ready {c['start_ready_ms']} ms ({cgroups['start_ready_ratio']}×), stop "
              f"{c['stop_ms']} ms ({cgroups['stop_ratio']}×)")
    notify = engine.get("notify")
    if notify:
        print(f"- sd_notify READY=1 -> worker_ready seen by a Python host on the event fd "
              f"({notify['samples']} respawns of {notify['workers']} workers): median {notify['p50_us']} µs, "
              f"p90 {notify['p90_us']} µs, p99 {notify['p99_us']} µs, max {notify['max_us']} µs")
    for key, what in (("flood", "captured stdout as worker.output records (jsonl to /dev/null)"),
                      ("flood_file", "captured stdout to a rotating file")):
        f = engine.get(key)
        if f:
            print(f"- one worker flooding {what}: it wrote {f['written_mb_per_s']} MB/s; "
                  f"{f['lines_per_s_through']:,} lines/s got through, {f['lines_dropped_per_s']:,} lines/s "
                  f"dropped (log queue), {f['bytes_dropped']:,} bytes dropped (file queue); "
                  f"snapshot meanwhile p50 {f['snapshot_p50_ms']} ms, p99 {f['snapshot_p99_ms']} ms; "
                  f"heartbeat failures next to it: {f['heartbeat_failures']}")


def targets(rows: dict, idle: dict | None, engine: dict, args) -> str:
    """The issue's targets, reported (never asserted)."""
    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "MISSED")

    def ratio(a: str, b: str, n: int) -> float | None:
        ra, rb = rows.get((a, n)), rows.get((b, n))
        return ra["total_ms"] / rb["total_ms"] if ra and rb else None

    def phase_ratio(phase: str, n: int) -> float | None:
        ra, rb = rows.get(("library", n)), rows.get(("floor", n))
        return ra[phase] / rb[phase] if ra and rb and rb[phase] > 0 else None

    def show(value: float | None, bound: float) -> str:
        return f"{'–' if value is None else f'{value:.2f}×'} {verdict(None if value is None else value <= bound)}"

    orig_lib = ratio("original", "library", 100)
    biggest = max(args.sizes)
    lines = ["", "Targets (reported, not asserted):"]
    for n in (1000, 5000):
        if ("library", n) in rows:
            lines.append(f"- start + ready + stop of {n:,} workers, library / single-threaded floor at most 1.0: "
                         f"{show(ratio('library', 'floor', n), 1.0)}")
            lines.append(f"- start + ready + stop of {n:,} workers, library / best floor at most 1.1: "
                         f"{show(ratio('library', 'floor_threads', n), 1.1)}")
    lines += [f"- stop of 1,000 workers, library / floor at most 1.15: {show(phase_ratio('stop_ms', 1000), 1.15)}"]
    lib, floor = rows.get(("library", 1000)), rows.get(("floor", 1000))
    if lib and floor and "stop_self_cpu_ms" in lib and "stop_self_cpu_ms" in floor:
        lines.append(f"  (the supervisor's own CPU during that stop: {lib['stop_self_cpu_ms']:.1f} ms against "
                     f"the floor's {floor['stop_self_cpu_ms']:.1f} ms)")
    lines += [
             f"- at least 50× faster than the original at N=100: "
             f"{'–' if orig_lib is None else f'{orig_lib:,.0f}×'} {verdict(None if orig_lib is None else orig_lib >= 50)}"]
    if idle:
        lines += [f"- idle CPU under 1 % of one core: {idle['idle_cpu_pct']:.3f} % {verdict(idle['idle_cpu_pct'] < 1)}",
                  f"- under 4 KiB of supervisor memory per worker: {idle['heap_per_worker_b']:,.0f} B heap, "
                  f"{idle['rss_per_worker_b']:,.0f} B RSS {verdict(max(idle['heap_per_worker_b'], idle['rss_per_worker_b']) < 4096)}"]
    crash, respawn = engine.get("crash"), engine.get("respawn")
    if crash:
        lines += [f"- host calls p99 during the crash loop at most 10 ms: {crash['p99_ms']:.2f} ms "
                  f"{verdict(crash['p99_ms'] <= 10)}",
                  f"- no false heartbeat failure: {crash['false_heartbeat_failures']} "
                  f"{verdict(crash['false_heartbeat_failures'] == 0)}"]
    probes = engine.get("probes")
    if probes:
        lines.append(f"- host calls p99 with {probes['workers']:,} TCP-probed workers next to the crash loop at "
                     f"most 10 ms: {probes['probed']['p99_ms']:.2f} ms {verdict(probes['probed']['p99_ms'] <= 10)}")
    if respawn and respawn["samples"]:
        lines.append(f"- crash -> ready within 2 ms of the policy's delay (median): {respawn['p50_ms']} ms "
                     f"{verdict(respawn['p50_ms'] <= 2)}")
    cgroups = engine.get("cgroups")
    if cgroups:
        lines += [f"- start + ready with cgroups at most 1.3× without: {cgroups['start_ready_ratio']}× "
                  f"{verdict(cgroups['start_ready_ratio'] <= 1.3)}",
                  f"- crash -> ready with cgroups within 3 ms of without (median): "
                  f"{cgroups['p50_overshoot_minus_none_ms']:+} ms "
                  f"{verdict(cgroups['p50_overshoot_minus_none_ms'] <= 3)}"]
    for key in ("flood", "flood_file"):
        f = engine.get(key)
        if f:
            lines.append(f"- a flooding worker ({key}) never fails a heartbeat worker: "
                         f"{f['heartbeat_failures']} {verdict(f['heartbeat_failures'] == 0)}")
    if biggest >= 5000:
        row = rows.get(("library", biggest))
        lines.append(f"- {biggest:,} workers in one supervisor: "
                     f"{verdict(row is not None and row['failed'] == 0)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
