"""What every driver in bench/peers shares: the socket the workers report their start to, the
process tree, memory (PSS) and CPU of a set of processes, and the clean-up that leaves nothing
running."""

import ctypes
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
LIMIT_S = 120.0  # a peer taking longer than this at a size is skipped at that size and above


class PeerTimeout(Exception):
    """A peer took over LIMIT_S seconds for one step."""


def become_subreaper() -> None:
    """Orphans of the peers' daemons (a killed daemon's workers, PM2's double-forked God daemon)
    become this process's children, so that clean-up can reap them: PID 1 here reaps nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


class Listener:
    """The unix datagram socket every worker sends "<pid>\\n" to once it runs. A thread stamps
    each datagram with time.monotonic() as it arrives, so a driver blocked in a command does not
    delay the stamps (the workers would wait on the socket's small queue meanwhile)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.seen: list[tuple[float, int]] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(64)
            except socket.timeout:
                continue
            except OSError:
                return
            stamp = time.monotonic()
            with self.cond:
                self.seen.append((stamp, int(data.strip())))
                self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.seen)

    def wait(self, since: int, count: int, limit: float = LIMIT_S) -> list[tuple[float, int]]:
        """The first `count` starts reported after mark `since`."""
        deadline = time.monotonic() + limit
        with self.cond:
            while len(self.seen) - since < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerTimeout(f"{len(self.seen) - since} of {count} workers started in {limit:.0f} s")
                self.cond.wait(left)
            return self.seen[since:since + count]

    def close(self) -> None:
        self.closed = True
        self.thread.join()
        self.sock.close()


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields:
                kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def descendants(roots: list[int]) -> list[int]:
    """The roots and every process below them."""
    kids, out, todo = children_map(), [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_ns(pids: list[int]) -> int:
    """CPU time on the clock of every thread of these processes (schedstat, in ns)."""
    total = 0
    for pid in pids:
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                total += int(Path(task.path, "schedstat").read_text().split()[0])
        except OSError:
            pass
    return total


def alive(pid: int) -> bool:
    """Still there: running, or a zombie not yet reaped by its parent."""
    return os.path.exists(f"/proc/{pid}")


def wait_gone(pids, limit: float = LIMIT_S) -> float:
    """Polls (every ms) until every pid is reaped; returns the time.monotonic() it happened."""
    left = [pid for pid in pids]
    deadline = time.monotonic() + limit
    while True:
        left = [pid for pid in left if alive(pid)]
        if not left:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise PeerTimeout(f"{len(left)} workers still there after {limit:.0f} s")
        time.sleep(0.001)


def kill_tree(roots: list[int], extra: list[int] | tuple[int, ...] = ()) -> None:
    """Ends the roots, everything below them and `extra`, supervisors first (stopped, so that
    none restarts a worker), then reaps what became this process's children."""
    pids = descendants([r for r in roots if alive(r)])
    pids += [p for p in extra if p not in pids]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reap_children()


def reap_children(limit: float = 10.0) -> None:
    """Reaps every child (and adopted orphan) of this process that has ended or ends within
    `limit` seconds of being killed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def run(cmd: list[str], env: dict | None = None, limit: float = LIMIT_S, **kw) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit, **kw)
    except subprocess.TimeoutExpired as exc:
        raise PeerTimeout(f"{Path(cmd[0]).name} took over {limit:.0f} s") from exc
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {result.returncode}: {(result.stderr or result.stdout)[-400:]}")
    return result


class HostPeer:
    """A supervisor that is a program of ours answering start / tick / stop on stdin (the
    library's C host, the Go loop, the multiprocessing host)."""

    name = "?"
    label = "?"

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc: subprocess.Popen | None = None

    def command(self, n: int) -> list[str]:
        raise NotImplementedError

    def missing(self) -> str | None:
        cmd = self.command(1)
        return None if Path(cmd[0]).exists() else f"{cmd[0]} not built"

    def _ask(self, line: str, expect: str) -> None:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        got = self._line()
        if got != expect:
            raise RuntimeError(f"{self.name}: {line!r} answered {got!r}")

    def _line(self) -> str:
        """The host's next line; it answers each command with one line, so nothing is buffered."""
        if not select.select([self.proc.stdout], [], [], LIMIT_S)[0]:
            raise PeerTimeout(f"{self.name} did not answer in {LIMIT_S:.0f} s")
        return self.proc.stdout.readline().strip()

    def prepare(self, n: int) -> None:
        self.proc = subprocess.Popen(self.command(n), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=self.ctx.tmp)
        got = self._line()
        if got != "idle":
            raise RuntimeError(f"{self.name}: said {got!r} instead of idle")

    def start(self) -> None:
        self._ask("start", "started")

    def tick(self) -> None:
        self._ask("tick", "ok")

    def stop(self) -> None:
        self._ask("stop", "stopped")

    def supervisor_roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def close(self, workers: list[int]) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # end of input: the host ends what runs and exits
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_tree([self.proc.pid], workers)
        self.proc = None


class DaemonPeer:
    """A supervisor daemon started as a child of the driver (in a session of its own) whose
    every file lives in the run's temporary folder."""

    name = "?"
    label = "?"

    def __init__(self, ctx):
        self.ctx = ctx
        self.dir = Path(ctx.tmp) / self.name
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None

    def missing(self) -> str | None:
        raise NotImplementedError

    def prepare(self, n: int) -> None:
        raise NotImplementedError

    def launch(self, cmd: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "daemon.out", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def tick(self) -> None:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}: "
                               f"{(self.dir / 'daemon.out').read_text()[-400:]}")

    def supervisor_roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def close(self, workers: list[int]) -> None:
        kill_tree(self.supervisor_roots(), workers)
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
