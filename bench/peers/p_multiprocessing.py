"""Python multiprocessing (mp_host.py): a Process per worker whose target execs it, restarted at
once from a connection.wait loop on the sentinels."""

import sys
from pathlib import Path

from common import HostPeer


class Peer(HostPeer):
    name = "multiprocessing"
    label = "Python multiprocessing"

    def command(self, n: int) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("mp_host.py")), str(self.ctx.worker),
                str(self.ctx.sock), str(n)]
