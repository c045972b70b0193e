"""circus (pip, in build/peers-venv): one watcher of numprocesses = N, warmup_delay 0, its
arbiter checking every 10 ms (check_delay 0.01, for quick restarts); started as circusd,
stopped with `circusctl stop`."""

from common import DaemonPeer, run


class Peer(DaemonPeer):
    name = "circus"
    label = "circus (10 ms checks)"

    def bin(self, program: str):
        return self.ctx.venv / "bin" / program

    def missing(self) -> str | None:
        return None if self.bin("circusd").exists() else f"{self.bin('circusd')} not installed (make bench-peers)"

    def prepare(self, n: int) -> None:
        d = self.dir
        self.endpoint = f"ipc://{d}/endpoint.sock"
        conf = ["[circus]", f"endpoint = {self.endpoint}", f"pubsub_endpoint = ipc://{d}/pubsub.sock",
                "check_delay = 0.01", "statsd = False", f"pidfile = {d}/circusd.pid",
                f"logoutput = {d}/circusd.log", "loglevel = WARNING",
                "[watcher:w]", f"cmd = {self.ctx.worker}", f"args = {self.ctx.sock}", f"numprocesses = {n}",
                "warmup_delay = 0", "respawn = True", "graceful_timeout = 60", "stop_signal = SIGTERM",
                "copy_env = True"]
        (d / "circus.ini").write_text("\n".join(conf) + "\n")

    def start(self) -> None:
        self.launch([str(self.bin("circusd")), str(self.dir / "circus.ini")])

    def stop(self) -> None:
        run([str(self.bin("circusctl")), "--endpoint", self.endpoint, "--timeout", "120", "stop"])
