"""``result.json`` names the code that wrote it: this project's commit, a dirty flag, the package version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ccsc_plugin.evaluation.provenance import PACKAGE_DIR, provenance, version

REPO = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def checkout(module_tmp) -> Path:
    """A clean clone of this project (its committed files only)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and this project's checkout")
    clone = module_tmp("clone") / "ccsc-reid"
    git(REPO, "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone))
    return clone


def test_a_clean_checkout_records_its_commit_and_clean(checkout):
    recorded = provenance(checkout / "ccsc_plugin")
    assert recorded["git_commit"] == git(checkout, "rev-parse", "HEAD") and recorded["git_dirty"] is False


@pytest.mark.parametrize(
    "edit",
    ["modified", "new-module", "staged"],
)
def test_an_edited_checkout_is_marked_dirty(checkout, tmp_path, edit):
    copy = tmp_path / "ccsc-reid"
    git(checkout, "clone", "--quiet", str(checkout), str(copy))
    if edit == "modified":
        (copy / "ccsc_plugin" / "errors.py").write_text("# edited\n", encoding="utf-8")
    elif edit == "new-module":
        (copy / "ccsc_plugin" / "losses" / "new_loss.py").write_text("# not committed\n", encoding="utf-8")
    else:
        (copy / "recipes" / "base.yaml").write_text("# edited\n", encoding="utf-8")
        git(copy, "add", "recipes/base.yaml")
    recorded = provenance(copy / "ccsc_plugin")
    assert recorded["git_commit"] == git(copy, "rev-parse", "HEAD") and recorded["git_dirty"] is True


@pytest.mark.parametrize(
    "path", ["docs/notes-of-mine.md", "README.md", "benchmarks/README.md", "benchmarks/results/x/seed-1/result.json"]
)
def test_documentation_and_kept_results_do_not_mark_the_tree_dirty(checkout, tmp_path, path):
    copy = tmp_path / "ccsc-reid"
    git(checkout, "clone", "--quiet", str(checkout), str(copy))
    (copy / path).parent.mkdir(parents=True, exist_ok=True)
    (copy / path).write_text("edited\n", encoding="utf-8")
    assert provenance(copy / "ccsc_plugin")["git_dirty"] is False


@pytest.mark.parametrize("tracked", [False, True], ids=["ignored-venv", "committed-copy"])
def test_a_package_inside_a_users_own_repository_records_no_commit(tmp_path, tracked):
    """A wheel installed into a virtual environment inside the user's repository: their HEAD is not our code."""
    user_repo = tmp_path / "my-project"
    site = user_repo / ".venv" / "lib" / "python3.11" / "site-packages"
    shutil.copytree(PACKAGE_DIR, site / "ccsc_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    (user_repo / "train.py").write_text("print('mine')\n", encoding="utf-8")
    git(user_repo, "init", "--quiet")
    git(user_repo, "add", "train.py", *(["-f", ".venv"] if tracked else []))
    git(user_repo, "commit", "--quiet", "-m", "mine")
    recorded = provenance(site / "ccsc_plugin")
    assert recorded == {"git_commit": None, "git_dirty": None, "package_version": version()}


def test_outside_any_repository_only_the_version_is_recorded(tmp_path):
    package = tmp_path / "site-packages" / "ccsc_plugin"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    recorded = provenance(package)
    assert recorded["git_commit"] is None and recorded["package_version"] == version() is not None
