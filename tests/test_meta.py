"""Packaging facts: the version is written once, the declared licence ships, the wheel carries it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import ops_widgets

ROOT = Path(__file__).resolve().parent.parent
# SHA-256 of the Apache License 2.0 text as published at apache.org/licenses/LICENSE-2.0.txt.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def _pyproject() -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    with (ROOT / "pyproject.toml").open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def test_installed_version_is_the_package_version() -> None:
    # The distribution's metadata is generated from ops_widgets/__init__.py at install time. If this
    # fails after a version bump, reinstall: python3 -m pip install -e '.[dev]'.
    assert importlib.metadata.version("ops-widgets") == ops_widgets.__version__


def test_version_is_written_once() -> None:
    pyproject = _pyproject()
    project = pyproject["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "ops_widgets/__init__.py"
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert not re.search(r"(?m)^\s*version\s*=", text), "pyproject.toml must not hold a literal version"
    assert ops_widgets.__version__ not in text
    init = (ROOT / "ops_widgets" / "__init__.py").read_text(encoding="utf-8")
    assert len(re.findall(r"(?m)^__version__\s*=", init)) == 1


def test_license_is_the_apache_2_text() -> None:
    assert _pyproject()["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    # Verbatim: the published text, byte for byte (line endings aside).
    assert hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest() == APACHE_2_SHA256


def test_wheel_ships_the_license_the_front_end_and_the_emulators_clip(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("ops_widgets-*.whl")
    assert wheel.name.startswith(f"ops_widgets-{ops_widgets.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"ops_widgets-{ops_widgets.__version__}.dist-info"
        assert f"{info}/licenses/LICENSE" in names
        metadata = z.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert {"ops_widgets/static/widgets.js", "ops_widgets/static/widgets.css", "ops_widgets/py.typed",
            "ops_widgets/emulator/veo_sample.mp4"} <= names  # the clip the emulator's videos are
