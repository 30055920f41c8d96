"""`make typecheck`: mypy --strict over the whole `supplybus` package.

The top-level folders become `supplybus.*` only through setuptools' editable finder, which
mypy does not follow, so this lays out a tree of links (``.supplybus/typecheck/supplybus``)
that mirrors the installed package, and runs mypy there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("events", "schemas", "consumers", "producers", "adapters", "ops")


def build_tree(target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    package = target / "supplybus"
    package.mkdir(parents=True)
    for module in (ROOT / "supplybus").glob("*.py"):
        (package / module.name).symlink_to(module)
    for part in PARTS:
        (package / part).symlink_to(ROOT / part, target_is_directory=True)
    return target


def main() -> int:
    tree = build_tree(ROOT / ".supplybus" / "typecheck")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "-p",
        "supplybus",
        "--config-file",
        str(ROOT / "pyproject.toml"),
    ]
    return subprocess.run(command, cwd=tree, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
