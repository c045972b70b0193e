"""What a new user does: a fresh venv, ``pip install ./bindings/python``, a script elsewhere.

No MPSUPERVISOR_LIBRARY, no PYTHONPATH: the package must bring its own library, and its
workers must run on the venv's Python. Also: an sdist carries the crate, and a wheel built
from that sdist alone bundles the library. Needs the repository (the crate) and PyPI for
pip's isolated build (setuptools), as a user's ``pip install`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import REPO

PACKAGE_SOURCE = REPO / "bindings" / "python"

pytestmark = pytest.mark.skipif(
    not (REPO / "Cargo.toml").is_file() or not (PACKAGE_SOURCE / "setup.py").is_file(),
    reason="needs the repository checkout (the crate and bindings/python)",
)

# Supervises Python workers with both classes and reports what it saw, as JSON.
USER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import mpsupervisor
    from mpsupervisor import MultiprocessBootstrapSupervisor, Supervisor
    from mpsupervisor._native import load_library

    def argv0(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\\0")[0].decode()

    report = {"package": mpsupervisor.__file__, "library": load_library().path, "exe": {}}
    worker = [sys.executable, "-c", "import mpsupervisor.worker as w; w.notify_ready(); w.wait_stop()"]
    with Supervisor() as sup:
        sup.configure_process_groups([{"name": "py", "workers": 2, "readiness": "notify", "argv": worker}])
        sup.start_groups(["py"])
        report["ready"] = sup.wait_ready(30.0)
        for entry in sup.snapshot()["py"]:
            report["exe"][entry["worker_id"]] = argv0(entry["pid"])
        sup.stop_groups(30.0, True)
        report["stopped"] = sorted(e["exit_code"] for e in sup.drain_events() if e["kind"] == "worker_stopped")
    with MultiprocessBootstrapSupervisor() as mp:  # groups without argv: the bundled worker
        mp.configure_process_groups([{"name": "execution.cpu", "workers": 2}])
        mp.start_groups(["execution.cpu"])
        report["dropin_ready"] = mp.wait_ready(30.0)
        for entry in mp.snapshot()["execution.cpu"]:
            report["exe"][entry["worker_id"]] = argv0(entry["pid"])
        mp.stop_groups(graceful_timeout_seconds=30, drain_inflight=True)
        report["dropin_stopped"] = sorted(
            e["exit_code"] for e in mp.lifecycle_events() if e["kind"] == "worker_stopped"
        )
    print(json.dumps(report))
    """
)


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MPSUPERVISOR_LIBRARY", "PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(command: List[str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        command, cwd=cwd, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fresh-venv")
    # The base interpreter, not this venv's: a venv made from a venv still is a fresh one.
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        _run([base, "-m", "venv", str(root / "venv")], cwd=root)
        yield root / "venv"
    finally:
        shutil.rmtree(root, ignore_errors=True)  # module scope: pytest's retention does not cover it


def _check_user_script(venv: Path, workdir: Path) -> None:
    workdir.mkdir(exist_ok=True)
    script = workdir / "supervise.py"
    script.write_text(USER_SCRIPT)
    python = venv / "bin" / "python"
    report = json.loads(_run([str(python), str(script)], cwd=workdir, timeout=120).splitlines()[-1])
    package_dir = Path(report["package"]).resolve().parent
    assert package_dir.is_relative_to(venv.resolve()), report
    assert Path(report["library"]).resolve() == package_dir / "libmpsupervisor.so"
    assert report["ready"] is True and report["dropin_ready"] is True
    assert report["stopped"] == [0, 0] and report["dropin_stopped"] == [0, 0]
    # Workers run the venv's Python (sys.executable), not python3 from PATH.
    assert set(report["exe"].values()) == {str(python)}, report
    assert sorted(report["exe"]) == ["execution.cpu#1", "execution.cpu#2", "py#1", "py#2"]


def test_pip_install_bundles_the_library(fresh_venv: Path, tmp_path: Path) -> None:
    _run([str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(PACKAGE_SOURCE)], cwd=tmp_path)
    _check_user_script(fresh_venv, tmp_path / "elsewhere")


def test_wheel_built_from_the_sdist_bundles_the_library(fresh_venv: Path, tmp_path: Path) -> None:
    # `python -m build` makes the sdist, then the wheel from the unpacked sdist alone. The
    # build tools of this venv (requirements-test.txt), offline; its own cargo target dir.
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    env_target = REPO / "target" / "python-sdist"
    _run(
        ["env", f"CARGO_TARGET_DIR={env_target}", sys.executable, "-m", "build", "--no-isolation",
         "--outdir", str(dist), str(PACKAGE_SOURCE)],
        cwd=tmp_path,
    )
    (sdist,) = dist.glob("mpsupervisor-*.tar.gz")
    (wheel,) = dist.glob("mpsupervisor-*.whl")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "rust/Cargo.toml", "rust/Cargo.lock", "rust/src/lib.rs"} <= names
    assert {"mpsupervisor/py.typed", "mpsupervisor/types.py"} <= names  # the types, for type checkers
    assert "-py3-none-linux_" in wheel.name  # any Python 3: ctypes, no extension module
    with zipfile.ZipFile(wheel) as archive:
        assert {"mpsupervisor/libmpsupervisor.so", "mpsupervisor/py.typed", "mpsupervisor/types.py"} <= set(
            archive.namelist()
        )
    _run(
        [str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
         str(wheel)],
        cwd=tmp_path,
    )
    _check_user_script(fresh_venv, tmp_path / "elsewhere")
