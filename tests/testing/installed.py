"""A virtual environment with this checkout installed, for tests that run as a user would."""

from __future__ import annotations

import importlib.util
import site
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def install_checkout(venv: Path) -> Path:
    """A virtual environment over this interpreter's packages (ferryman's dependencies) with
    this checkout installed in it: by pip where it can build a wheel offline, else as pip's
    editable install lays it out (a .pth naming src/ and a dist-info whose entry_points.txt is
    pyproject.toml's)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    if sys.prefix != sys.base_prefix:
        # this interpreter is a venv itself: --system-site-packages reaches its base, not the
        # packages installed here (ferryman's dependencies); name them
        (purelib / "outer-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    if importlib.util.find_spec("wheel") is not None:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--disable-pip-version-check",
                "-e",
                str(REPO),
            ],
            check=True,
        )
        return python
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (purelib / "ferryman-under-test.pth").write_text(f"{REPO / 'src'}\n")
    info = purelib / f"ferryman-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: ferryman\nVersion: {project['version']}\n"
    )
    groups = {"console_scripts": project.get("scripts", {}), **project["entry-points"]}
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
            for group, points in groups.items()
        )
    )
    return python
