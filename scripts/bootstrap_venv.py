"""Create the project's virtual environment with nothing but python3.

Why this exists: on a fresh Debian machine `python3 -m venv` fails when the
`python3-venv` package (ensurepip) is not installed. In that case we make the
venv without pip and bootstrap pip from its wheel on PyPI: a pip wheel is a
runnable zip, so `python pip.whl/pip install pip` installs pip into the venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
import venv
from pathlib import Path


def _has_pip(python: Path) -> bool:
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def _bootstrap_pip(python: Path) -> None:
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as response:
        release = json.load(response)
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel["url"], timeout=120) as response:
            target.write_bytes(response.read())
        subprocess.run([python, f"{target}/pip", "install", "-q", str(target)], check=True)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv")
    python = root / "bin" / "python"
    if not python.exists():
        try:
            venv.EnvBuilder(with_pip=True).create(root)
        except (subprocess.CalledProcessError, OSError):
            print("ensurepip is missing; bootstrapping pip from PyPI", file=sys.stderr)
            venv.EnvBuilder(with_pip=False, clear=True).create(root)
    if not _has_pip(python):
        _bootstrap_pip(python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
