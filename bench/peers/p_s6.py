"""s6 (apt): s6-svscan on a scan directory of N service directories, each one's ./run the worker
itself (it finds the socket in PEER_READY_SOCK); stopped with `s6-svscanctl -t`, which brings
every service down and ends s6-svscan."""

import os
import shutil

from common import DaemonPeer, run


class Peer(DaemonPeer):
    name = "s6"
    label = "s6 (s6-svscan)"

    def missing(self) -> str | None:
        return None if shutil.which("s6-svscan") else "s6-svscan not installed (make bench-peers: apt-get install s6)"

    def prepare(self, n: int) -> None:
        self.n = n
        self.scan = self.dir / "scan"
        self.scan.mkdir()
        for i in range(n):
            service = self.scan / f"w{i}"
            service.mkdir()
            os.symlink(self.ctx.worker, service / "run")

    def start(self) -> None:
        env = dict(os.environ, PEER_READY_SOCK=str(self.ctx.sock))
        # -c: how many services s6-svscan keeps (500 by default; it ignores the rest).
        self.launch([shutil.which("s6-svscan"), "-c", str(self.n + 10), str(self.scan)], env=env)

    def stop(self) -> None:
        run([shutil.which("s6-svscanctl"), "-t", str(self.scan)])
