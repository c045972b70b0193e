"""PM2 (npm, in build/peers-npm): one app of N fork-mode instances, interpreter "none",
autorestart with restart_delay 0; `pm2 start ecosystem.json`, `pm2 stop all`. PM2_HOME, its logs
and pid files all live in the run's temporary folder (PM2 deletes an app's pid_file when it stops:
never point it at a file of the system); clean-up ends the daemon with `pm2 kill`."""

import json
import os
import shutil
from pathlib import Path

from common import DaemonPeer, kill_tree, run


class Peer(DaemonPeer):
    name = "pm2"
    label = "PM2"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.home = self.dir / "home"
        self.home.mkdir()
        self.env = dict(os.environ, PM2_HOME=str(self.home), HOME=str(self.dir))

    def pm2(self) -> str:
        return str(self.ctx.npm / "node_modules" / ".bin" / "pm2")

    def missing(self) -> str | None:
        if not shutil.which("node"):
            return "node not installed"
        return None if Path(self.pm2()).exists() else f"{self.pm2()} not installed (make bench-peers)"

    def prepare(self, n: int) -> None:
        self.n = n
        run([self.pm2(), "ping"], env=self.env)  # starts the daemon
        app = {"name": "w", "script": str(self.ctx.worker), "args": [str(self.ctx.sock)], "interpreter": "none",
               "exec_mode": "fork", "instances": n, "autorestart": True, "restart_delay": 0,
               "max_restarts": 1000000, "min_uptime": 0,
               "out_file": str(self.dir / "out.log"), "error_file": str(self.dir / "err.log"),
               "pid_file": str(self.dir / "w.pid")}
        (self.dir / "ecosystem.json").write_text(json.dumps({"apps": [app]}))

    def start(self) -> None:
        if self.n:
            run([self.pm2(), "start", str(self.dir / "ecosystem.json")], env=self.env)

    def stop(self) -> None:
        run([self.pm2(), "stop", "all"], env=self.env)

    def supervisor_roots(self) -> list[int]:
        try:
            return [int((self.home / "pm2.pid").read_text())]
        except (OSError, ValueError):
            return []

    def close(self, workers: list[int]) -> None:
        roots = self.supervisor_roots()
        try:
            run([self.pm2(), "kill"], env=self.env, limit=60)
        except Exception:  # noqa: BLE001 - the daemon is killed below whatever happened
            pass
        finally:
            kill_tree(roots, workers)
