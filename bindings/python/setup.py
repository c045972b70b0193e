"""Build the package with libmpsupervisor inside it.

``pip install ./bindings/python`` (or a wheel built from it) runs ``cargo build --release``
on the crate and copies the artifacts into the package directory, next to ``_native.py``,
where the loader looks first after ``MPSUPERVISOR_LIBRARY``:

- ``libmpsupervisor.so``, the crate's cdylib;
- each program listed in ``BUNDLED_PROGRAMS`` (a cargo ``[[bin]]`` target of the crate).
  Bundling a helper program is one line: add its target name there; the package finds it
  with ``mpsupervisor._native.bundled_program(name)``.

Where the crate is: ``rust/`` inside this directory in an sdist (``sdist`` copies it
there), else the repository root two levels up (a checkout). pip builds a local directory
in place, so ``../../Cargo.toml`` is there; ``python -m build`` builds the wheel from the
sdist, which carries the crate. ``CARGO`` names the cargo to run (default: ``cargo`` from
``PATH``, then ``~/.cargo/bin/cargo``); ``CARGO_TARGET_DIR`` is honoured by cargo as usual.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from setuptools import Command, setup
from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist
from setuptools.dist import Distribution

PACKAGE = "mpsupervisor"
CRATE = "mpsupervisor"  # the crate's package name and [lib] name
BUNDLED_PROGRAMS: List[str] = ["mpsup-keeper", "mpsup-exec"]  # cargo [[bin]] targets to bundle
# What an sdist carries of the crate (relative to the crate root).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "src", "build.rs", "LICENSE", "LICENSE-MIT", "LICENSE-APACHE"]

HERE = Path(__file__).resolve().parent
SDIST_CRATE_DIR = "rust"


def crate_dir() -> Path:
    for candidate in (HERE / SDIST_CRATE_DIR, HERE.parent.parent):
        if (candidate / "Cargo.toml").is_file() and (candidate / "src" / "lib.rs").is_file():
            return candidate
    raise SystemExit(
        f"mpsupervisor: the Rust crate was not found (looked for {HERE / SDIST_CRATE_DIR / 'Cargo.toml'} "
        f"and {HERE.parent.parent / 'Cargo.toml'}). Build from a checkout of the repository "
        f"(pip install ./bindings/python) or from an sdist made by this setup.py."
    )


def cargo_command() -> str:
    explicit = os.environ.get("CARGO")
    if explicit:
        return explicit
    found = shutil.which("cargo")
    if found:
        return found
    home = Path.home() / ".cargo" / "bin" / "cargo"
    if home.is_file():
        return str(home)
    raise SystemExit("mpsupervisor: cargo not found (install Rust, or set CARGO to its path)")


def cargo_build(manifest: Path) -> Dict[str, Path]:
    """Run ``cargo build --release`` for the library and the bundled programs.

    Returns ``{file name in the package: built file}``, read from cargo's JSON messages."""
    command = [
        cargo_command(), "build", "--release", "--locked", "--manifest-path", str(manifest),
        "--message-format=json-render-diagnostics", "--lib",
    ]
    for program in BUNDLED_PROGRAMS:
        command += ["--bin", program]
    print("mpsupervisor: " + " ".join(command), flush=True)
    proc = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"mpsupervisor: cargo build failed (exit status {proc.returncode})")
    artifacts: Dict[str, Path] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("reason") != "compiler-artifact":
            continue
        target = message.get("target") or {}
        kinds = target.get("kind") or []
        if target.get("name") == CRATE and "cdylib" in kinds:
            for filename in message.get("filenames") or []:
                if filename.endswith(".so"):
                    artifacts[f"lib{CRATE}.so"] = Path(filename)
        elif "bin" in kinds and target.get("name") in BUNDLED_PROGRAMS and message.get("executable"):
            artifacts[str(target["name"])] = Path(message["executable"])
    wanted = [f"lib{CRATE}.so", *BUNDLED_PROGRAMS]
    missing = [name for name in wanted if name not in artifacts]
    if missing:
        raise SystemExit(f"mpsupervisor: cargo did not report {', '.join(missing)}")
    return artifacts


class build_rust(Command):
    """Build the crate with cargo and copy its artifacts into the built package."""

    description = "build libmpsupervisor (and the bundled programs) with cargo"
    user_options = []  # type: ignore[var-annotated]  # no options

    def initialize_options(self) -> None:
        self.build_lib: Optional[str] = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        assert self.build_lib is not None
        destination = Path(self.build_lib) / PACKAGE
        destination.mkdir(parents=True, exist_ok=True)
        for name, built in cargo_build(crate_dir() / "Cargo.toml").items():
            target = destination / name
            temporary = target.with_name(target.name + ".tmp")
            shutil.copyfile(built, temporary)  # then rename: a loaded copy is never rewritten
            os.chmod(temporary, 0o755)
            os.replace(temporary, target)


class build_py(_build_py):
    def run(self) -> None:
        super().run()
        self.run_command("build_rust")

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = list(super().get_outputs(include_bytecode))
        package = Path(self.build_lib) / PACKAGE
        outputs += [str(package / name) for name in [f"lib{CRATE}.so", *BUNDLED_PROGRAMS]]
        return outputs


class sdist(_sdist):
    """An sdist that carries the crate under ``rust/``, so a wheel can be built from it alone."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = crate_dir()
        destination = Path(base_dir) / SDIST_CRATE_DIR
        for name in CRATE_FILES:
            path = source / name
            if path.is_dir():
                shutil.copytree(path, destination / name, dirs_exist_ok=True)
            elif path.is_file():
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination / name)


class bdist_wheel(_bdist_wheel):
    """The wheel holds a native library but no extension module: any Python 3, this platform."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_rust": build_rust, "build_py": build_py, "sdist": sdist, "bdist_wheel": bdist_wheel},
)
