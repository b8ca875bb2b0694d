"""Which code wrote a result: this project's git commit (and whether its tree was edited), and the package version.

The commit is recorded only when the package runs from a checkout of this project: the repository around the
package must be the one whose ``pyproject.toml`` names ``ccsc-reid`` and holds this very ``ccsc_plugin`` folder,
tracked by git. A wheel installed into a user's own repository (a virtual environment inside it, say) records
``git_commit: null``; the package version is always recorded.
"""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # ccsc_plugin/
DISTRIBUTION = "ccsc-reid"
# What runs: an edited or new file here changes a result; documentation and kept results do not.
CODE_PATHS = (
    "ccsc_plugin",
    "recipes",
    "demo",
    "benchmarks",
    "pyproject.toml",
    ":(exclude)benchmarks/results",
    ":(exclude)*.md",
)


def _git(repo: Path, *args: str) -> str | None:
    """``git ARGS`` in ``repo``: its output, or None when git is missing or fails."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def project_checkout(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The root of this project's checkout holding ``package_dir``, or None (an installed wheel, a user's repo)."""
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    root = Path(top.strip()).resolve()
    if package_dir.resolve() != root / "ccsc_plugin":
        return None
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return None
    tracked = _git(root, "ls-files", "--error-unmatch", "ccsc_plugin/__init__.py")
    return root if name == DISTRIBUTION and tracked is not None else None


def provenance(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """``git_commit`` (None outside this project's checkout), ``git_dirty`` and ``package_version`` for a result.

    ``git_dirty`` is true when a file of the code (``ccsc_plugin``, ``recipes``, ``demo``, ``benchmarks``,
    ``pyproject.toml``; Markdown and ``benchmarks/results`` left out) differs from the commit or is new, so that the
    commit alone does not name the code that ran.
    """
    root = project_checkout(package_dir)
    commit = _git(root, "rev-parse", "HEAD") if root is not None else None
    dirty = None
    if root is not None and commit is not None:
        edited = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
        added = _git(root, "ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS)
        dirty = edited is None or added is None or bool(edited.strip() or added.strip())
    return {"git_commit": commit.strip() if commit else None, "git_dirty": dirty, "package_version": version()}


def version() -> str | None:
    """The installed ``ccsc-reid`` version, or None when the package runs from a folder it was not installed from."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
