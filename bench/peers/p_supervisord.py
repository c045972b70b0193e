"""supervisord (pip, in build/peers-venv): one [program] with numprocs = N, startsecs = 0 (running
at once), autorestart; started as `supervisord -n`, stopped with `supervisorctl stop all`."""

from common import DaemonPeer, run


class Peer(DaemonPeer):
    name = "supervisord"
    label = "supervisord"

    def bin(self, program: str):
        return self.ctx.venv / "bin" / program

    def missing(self) -> str | None:
        return None if self.bin("supervisord").exists() else f"{self.bin('supervisord')} not installed (make bench-peers)"

    def prepare(self, n: int) -> None:
        d = self.dir
        conf = [
            "[supervisord]", "nodaemon=true", f"logfile={d}/supervisord.log", f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}", "loglevel=warn", f"minfds={min(4 * n + 256, self.ctx.nofile)}",
            "[unix_http_server]", f"file={d}/supervisor.sock",
            "[supervisorctl]", f"serverurl=unix://{d}/supervisor.sock",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        if n:
            conf += ["[program:w]", f"command={self.ctx.worker} {self.ctx.sock}", f"numprocs={n}",
                     "process_name=%(program_name)s_%(process_num)d", "startsecs=0", "autorestart=true",
                     "startretries=1000000", "stopwaitsecs=60", "stdout_logfile=NONE", "stderr_logfile=NONE"]
        (d / "supervisord.conf").write_text("\n".join(conf) + "\n")

    def start(self) -> None:
        self.launch([str(self.bin("supervisord")), "-n", "-c", str(self.dir / "supervisord.conf")])

    def stop(self) -> None:
        run([str(self.bin("supervisorctl")), "-c", str(self.dir / "supervisord.conf"), "stop", "all"])
