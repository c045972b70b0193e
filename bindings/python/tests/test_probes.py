"""Probes (``readiness_probe``, ``port_base``) through the Python binding, with real HTTP servers."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from conftest import READY_TIMEOUT, events_of, wait_for_events
from mpsupervisor import Supervisor

# Answers /ready with 503 while $DIR/sick-$INDEX exists, else 200, on $PORT.
SERVER = r"""
import http.server, os
port, index, d = int(os.environ["PORT"]), os.environ["INDEX"], os.environ["DIR"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if os.path.exists(f"{d}/sick-{index}") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports on 127.0.0.1."""
    for base in range(23000 + (sys.hexversion % 997) * 17, 60000, 101):
        held = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free ports")


def test_an_http_readiness_probe_on_each_workers_own_port(sup: Supervisor, tmp_path: Path) -> None:
    (tmp_path / "sick-2").touch()
    sup.configure_process_groups([{
        "name": "api", "workers": 2, "argv": [sys.executable, "-c", SERVER],
        "control_channel": "off", "readiness": "probe", "port_base": free_ports(2),
        "env": {"PORT": "{port}", "INDEX": "{index}", "DIR": str(tmp_path)},
        "readiness_probe": {"http": "http://127.0.0.1:{port}/ready", "period_ms": 50},
    }])
    sup.start_groups(["api"])
    events = wait_for_events(sup, lambda seen: any(
        e["worker_id"] == "api#2" and e["failures"] == 3 for e in events_of(seen, "probe_failed")
    ) and any(e["worker_id"] == "api#1" for e in events_of(seen, "worker_ready")))
    assert not any(e["worker_id"] == "api#2" for e in events_of(events, "worker_ready"))
    failed = [e for e in events_of(events, "probe_failed") if e["worker_id"] == "api#2"]
    # Once when it began to fail, once at the threshold: not once per period.
    assert [e["failures"] for e in failed] == [1, 3]
    assert failed[0]["detail"] in ("connect: Connection refused", "HTTP 503")
    assert [w["ready"] for w in sup.snapshot()["api"]] == [True, False]
    (tmp_path / "sick-2").unlink()
    assert sup.wait_ready(READY_TIMEOUT)
    sup.stop_groups(READY_TIMEOUT, True)
