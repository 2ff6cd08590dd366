"""The wheel installs one top-level package, `framework`; the demo's examples ride inside it."""

from __future__ import annotations

import email
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.installed import REPO, Installed, build_wheel, install_into_empty_venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    into = tmp_path_factory.mktemp("wheel")
    return install_into_empty_venv(build_wheel(into), into)


def wheel_names(installed: Installed) -> list[str]:
    with zipfile.ZipFile(installed.wheel) as wheel:
        return wheel.namelist()


def test_wheel_has_no_top_level_schemas_or_services(installed: Installed) -> None:
    """The wheel holds only `framework` and its metadata at the top."""
    tops = {name.split("/")[0] for name in wheel_names(installed)}
    assert tops == {"framework", installed.wheel.name.split("-py3")[0] + ".dist-info"}


def test_installing_adds_only_framework_to_site_packages(installed: Installed) -> None:
    """`pip install` of the wheel into an empty venv adds no `schemas` or `services`."""
    added = {name for name in installed.top_level if not name.startswith(("_", "distutils"))}
    assert "schemas" not in added and "services" not in added
    assert {name for name in added if not name.endswith(".dist-info")} == {"framework"}


def test_every_package_of_the_checkout_is_in_the_wheel(installed: Installed) -> None:
    """pyproject lists packages explicitly: a new package directory must be added there."""
    names = set(wheel_names(installed))
    for init in sorted(REPO.glob("*/**/__init__.py")):
        relative = init.relative_to(REPO)
        top = relative.parts[0]
        if top == "framework":
            expected = str(relative)
        elif top in ("services", "schemas"):
            expected = f"framework/_examples/{relative}"
        else:
            continue
        assert expected in names, f"{relative.parent} is missing from [tool.setuptools] packages"


def test_metadata_has_spdx_license_classifiers_and_urls(installed: Installed) -> None:
    """License as an SPDX expression with its file, classifiers and project URLs."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        info = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(info))
        licenses = [n for n in wheel.namelist() if n.endswith("licenses/LICENSE")]
    assert metadata["License-Expression"] == "MIT"
    assert licenses
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier", [])
    assert any(url.startswith("Repository, ") for url in metadata.get_all("Project-URL", []))
    assert metadata["Requires-Python"] == ">=3.11"


def test_installed_framework_does_not_import_the_examples(
    installed: Installed, tmp_path: Path
) -> None:
    """From an install, `framework --help` works and `import services` finds nothing."""
    assert installed.framework("--help", cwd=tmp_path).returncode == 0
    probe = installed.framework("--version", cwd=tmp_path)
    assert probe.stdout.startswith("framework ")
    result = subprocess.run(
        [str(installed.python), "-c", "import services"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "No module named 'services'" in result.stderr


def test_demo_finds_its_examples_inside_the_install(installed: Installed, tmp_path: Path) -> None:
    """The installed demo imports its example services from framework/_examples."""
    script = (
        "from framework.cli.demo.examples import use_examples; root = use_examples(); "
        "import services.orders.worker as w, schemas.orders as s; "
        "print(root); print(w.__file__); print(s.__file__)"
    )
    result = subprocess.run(
        [str(installed.python), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    root, worker, schema = result.stdout.split()
    assert Path(root) == installed.site_packages / "framework" / "_examples"
    assert worker.startswith(root) and schema.startswith(root)
