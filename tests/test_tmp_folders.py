"""The suite's own disk use: a passed test's folders go at once, a failed one's stay for its reader.

CI ran out of disk when every trained test run (100-300 MB of checkpoints) stayed until the session ended.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

POLICY = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"]["pytest"][
    "ini_options"
]["tmp_path_retention_policy"]
MODULE = """
import pytest

@pytest.fixture(scope="module")
def run(module_tmp):
    folder = module_tmp("run")
    (folder / "checkpoint.pt").write_bytes(bytes(1000))
    return folder

def test_writes_a_run_and_a_file(run, tmp_path):
    (tmp_path / "features.npy").write_bytes(bytes(1000))
    assert OUTCOME
"""


@pytest.fixture
def suite(pytester) -> pytest.Pytester:
    """A two-module suite with the project's retention policy and ``module_tmp``: one module passes, one fails."""
    pytester.makeini(f"[pytest]\ntmp_path_retention_policy = {POLICY}\n")
    pytester.makeconftest("from tmp_folders import module_tmp  # noqa: F401\n")
    pytester.makepyfile(test_passes=MODULE.replace("OUTCOME", "True"), test_fails=MODULE.replace("OUTCOME", "False"))
    return pytester


def test_a_passed_module_leaves_no_files_and_a_failed_one_keeps_its_own(suite, tmp_path):
    basetemp = tmp_path / "basetemp"
    suite.runpytest(f"--basetemp={basetemp}", "-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)
    left = sorted(path.relative_to(basetemp) for path in basetemp.rglob("*") if path.is_file())
    assert [(path.parts[0].rstrip("0123456789"), path.name) for path in left] == [
        ("test_fails", "checkpoint.pt"),  # the failed module's run
        ("test_writes_a_run_and_a_file", "features.npy"),  # the failed test's tmp_path
    ]
