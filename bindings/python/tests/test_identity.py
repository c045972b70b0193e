"""Part 7's identity, process attributes and environment files through the Python face: a real
worker runs as the user, umask, no_new_privs and limits its group asked, with its env file's
variables; an unknown user is an InvalidConfigError naming it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import READY_TIMEOUT
from mpsupervisor import Supervisor
from mpsupervisor import InvalidConfigError
from mpsupervisor.types import Group

NOTIFY_SH = ["sh", "-c", 'echo READY >&"$MPSUP_CONTROL_FD"; read line <&"$MPSUP_CONTROL_FD"']


def proc_status(pid: int) -> Dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: " ".join(value.split()) for key, _, value in (line.partition(":") for line in lines)}


def proc_environ(pid: int) -> List[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")


def only_pid(sup: Supervisor, name: str) -> int:
    pids = [w["pid"] for w in sup.snapshot()[name]]
    assert len(pids) == 1, pids
    return pids[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")
def test_a_worker_runs_as_its_group_asked_with_its_env_file(sup: Supervisor, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text('# comment\nSECRET="from the file"\nexport OTHER=2\n')
    group: Group = {
        "name": "id",
        "argv": NOTIFY_SH,
        "readiness": "notify",
        "user": "nobody",
        "supplementary_groups": [],
        "umask": "0027",
        "no_new_privileges": True,
        "rlimits": {"nofile": [100, 200], "core": 0},
        "env_files": [str(env_file), f"-{tmp_path / 'missing.env'}"],
        "env": {"OTHER": "from env"},
    }
    sup.configure_process_groups([group])
    sup.start_groups(["id"])
    assert sup.wait_ready(READY_TIMEOUT) is True
    pid = only_pid(sup, "id")
    status = proc_status(pid)
    assert (status["Uid"], status["Gid"], status["Groups"]) == ("65534 " * 3 + "65534", "65534 " * 3 + "65534", "")
    assert (status["Umask"], status["NoNewPrivs"]) == ("0027", "1")
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert any(line.split()[3:5] == ["100", "200"] for line in limits.splitlines() if "open files" in line), limits
    environ = proc_environ(pid)
    assert "SECRET=from the file" in environ and "OTHER=from env" in environ, environ
    sup.force_terminate_groups(["id"])


def test_an_unknown_user_fails_the_start_naming_it(sup: Supervisor) -> None:
    sup.configure_process_groups([{"name": "id", "argv": NOTIFY_SH, "user": "no-such-user-mpsup"}])
    with pytest.raises(InvalidConfigError, match='user: no user "no-such-user-mpsup"'):
        sup.start_groups(["id"])
    assert sup.snapshot().get("id", []) == []
