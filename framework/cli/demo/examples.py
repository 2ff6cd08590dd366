"""Where the demo's example packages (`services`, `schemas`) are, and making them importable.

In the repository they are its top-level `services/` and `schemas/`; an installed wheel
carries the same files under `framework/_examples/` (see pyproject.toml), so a user's
site-packages never gains packages of those generic names. Only `framework demo` puts that
directory on `sys.path`, when it starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import framework
from framework.errors import ConfigurationError

EXAMPLE_PACKAGES = ("services", "schemas")


def examples_root() -> Path:
    """The directory holding the example `services` and `schemas` packages."""
    package = Path(framework.__file__).resolve().parent
    for root in (package / "_examples", package.parent):  # installed wheel, then a checkout
        if all((root / name / "__init__.py").is_file() for name in EXAMPLE_PACKAGES):
            return root
    raise ConfigurationError(
        f"the demo's example services are missing (looked in {package / '_examples'} and "
        f"{package.parent}): reinstall framework, or run `make demo` in a checkout"
    )


def use_examples() -> Path:
    """Make the example packages importable as `services` and `schemas`; returns their root.

    Refuses if other packages of those names are already imported (say, a user's own).
    """
    root = examples_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for name in EXAMPLE_PACKAGES:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if module is not None and (
            origin is None or not Path(origin).resolve().is_relative_to(root.resolve())
        ):
            raise ConfigurationError(
                f"another package {name!r} is already imported ({origin}); the demo needs its "
                f"own from {root}"
            )
    return root
