"""A pre-fork HTTP worker, written the way socket-activated servers are: it serves on the
sockets systemd's variables hand it (LISTEN_FDS from fd 3, checked against LISTEN_PID), says
READY=1 to NOTIFY_SOCKET, and on SIGTERM or `STOP` on its control channel stops accepting,
finishes the request it holds and exits 0.

`GET /env` answers what it was given as JSON; any other path answers `VERSION PID`.
"""

import json
import os
import selectors
import signal
import socket
import sys


def notify(message: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)


def inode(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def what_i_got(listeners: list[socket.socket]) -> dict:
    return {
        "pid": os.getpid(),
        "listen_pid": os.environ.get("LISTEN_PID"),
        "listen_fds": os.environ.get("LISTEN_FDS"),
        "listen_fdnames": os.environ.get("LISTEN_FDNAMES"),
        "control_fd": os.environ.get("MPSUP_CONTROL_FD"),
        "sockets": [
            {"fd": s.fileno(), "inode": inode(s.fileno()), "address": str(s.getsockname())}
            for s in listeners
        ],
    }


def serve(conn: socket.socket, listeners: list[socket.socket]) -> None:
    conn.setblocking(True)
    conn.settimeout(10)
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return
        request += chunk
    path = request.split(b" ", 2)[1]
    if path == b"/env":
        body = json.dumps(what_i_got(listeners)).encode()
    else:
        body = f"{os.environ.get('VERSION', '0')} {os.getpid()}".encode()
    conn.sendall(
        b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )


def main() -> int:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        # What sd_listen_fds does: the sockets are not for this process.
        print(f"LISTEN_PID={os.environ.get('LISTEN_PID')} is not my pid", file=sys.stderr)
        return 3
    count = int(os.environ["LISTEN_FDS"])
    listeners = [socket.socket(fileno=3 + i) for i in range(count)]
    selector = selectors.DefaultSelector()
    for s in listeners:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: None)
    selector.register(wake_r, selectors.EVENT_READ)
    control = None
    if "MPSUP_CONTROL_FD" in os.environ:
        control = socket.socket(fileno=int(os.environ["MPSUP_CONTROL_FD"]))
        selector.register(control, selectors.EVENT_READ)
    notify("READY=1")
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                line = control.recv(4096)
                if line and not line.startswith(b"STOP"):
                    continue
                return 0
            if key.fileobj == wake_r:
                return 0
            try:
                conn, _ = key.fileobj.accept()
            except BlockingIOError:
                continue
            with conn:
                try:
                    serve(conn, listeners)
                except OSError:
                    pass


if __name__ == "__main__":
    sys.exit(main())
