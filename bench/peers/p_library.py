"""mpsupervisor through its C API (peer_lib_host.c): restart "always" with no delay, workers
without a control channel stopped by SIGTERM, like every peer's."""

from common import HostPeer


class Peer(HostPeer):
    name = "library"
    label = "mpsupervisor (C API)"

    def command(self, n: int) -> list[str]:
        return [str(self.ctx.build / "peer_lib_host"), str(self.ctx.worker), str(self.ctx.sock), str(n)]
