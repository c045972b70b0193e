#!/usr/bin/env python3
"""What a Python programmer writes instead of a supervisor: multiprocessing.Process per worker
(the default start method; the target execs the worker), multiprocessing.connection.wait on the
sentinels, and a crashed worker started again at once.

usage: python3 mp_host.py WORKER SOCK N
Prints "idle", then answers commands on stdin, one line each: "start" (then "started"), "tick"
("ok"), "stop" (Process.terminate each, then join each, then "stopped"). At end of input it
kills whatever runs and joins it.
"""

import fcntl
import multiprocessing
import os
import sys
from multiprocessing.connection import wait


def exec_worker(worker: str, sock: str) -> None:
    # The Process's sentinel is a pipe whose write end only this child holds, and Python makes it
    # close-on-exec: kept open across the exec, it still tells the parent when the worker ends.
    # It is the only write-only descriptor above 2 here.
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > 2 and fcntl.fcntl(int(name), fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                os.set_inheritable(int(name), True)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    os.execv(worker, [worker, sock])


def main() -> int:
    worker, sock, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    procs: dict[int, multiprocessing.Process] = {}  # sentinel -> process
    stdin = sys.stdin.fileno()
    pending = b""

    def spawn() -> None:
        p = multiprocessing.Process(target=exec_worker, args=(worker, sock))
        p.start()
        procs[p.sentinel] = p

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say("idle")
    while True:
        for ready in wait([stdin, *procs]):
            if ready != stdin:
                p = procs.pop(ready)
                p.join()
                spawn()
                continue
            data = os.read(stdin, 4096)
            if not data:
                for p in procs.values():
                    p.kill()
                for p in procs.values():
                    p.join()
                return 0
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line == b"start":
                    for _ in range(n):
                        spawn()
                    say("started")
                elif line == b"tick":
                    say("ok")
                elif line == b"stop":
                    for p in procs.values():
                        p.terminate()
                    for p in procs.values():
                        p.join()
                    procs.clear()
                    say("stopped")
                else:
                    sys.exit(f"mp_host: unknown command {line!r}")
            break  # procs changed: wait again on the new set


if __name__ == "__main__":
    sys.exit(main())
