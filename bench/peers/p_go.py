"""A bare Go os/exec loop (go_loop/main.go): one goroutine per worker, restarted at once."""

from common import HostPeer


class Peer(HostPeer):
    name = "go"
    label = "a bare Go os/exec loop"

    def command(self, n: int) -> list[str]:
        return [str(self.ctx.build / "peer_go_loop"), str(self.ctx.worker), str(self.ctx.sock), str(n)]
