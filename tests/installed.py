"""Build the wheel from this checkout and install it into an empty virtualenv (offline)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "framework", "services", "schemas")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    site_packages: Path
    top_level: frozenset[str]  # what the install put into site-packages

    def framework(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed `framework` console script in `cwd`."""
        return subprocess.run(
            [str(self.python.parent / "framework"), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
        )


def build_wheel(into: Path) -> Path:
    """The wheel of a copy of this checkout (no build isolation: no download needed)."""
    source = into / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(into / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next((into / "dist").glob("framework-*.whl"))


def install_into_empty_venv(wheel: Path, into: Path) -> Installed:
    """Install `wheel` alone (no dependencies) into a new venv without pip; its dependencies
    come from this test run's environment through a .pth line placed after its own
    site-packages (a .pth line adds a directory, it does not run that directory's .pth files,
    so the checkout's editable install stays out)."""
    venv = into / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    top_level = frozenset(path.name for path in site.iterdir())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel, python, site, top_level)
