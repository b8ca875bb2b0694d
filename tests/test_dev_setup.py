"""The README's test command runs the whole suite on a fresh machine: the browser tests never skip under it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_demo_browser import require_chromium

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("required, outcome", [(True, pytest.fail.Exception), (False, pytest.skip.Exception)])
def test_a_missing_browser_fails_the_required_run_and_skips_otherwise(tmp_path, required, outcome):
    with pytest.raises(outcome, match="apt-get install -y chromium"):
        require_chromium(tmp_path / "no-chromium", required=required)


def test_a_present_browser_passes(tmp_path):
    browser = tmp_path / "chromium"
    browser.touch()
    require_chromium(browser, required=True)  # no skip, no failure


def test_make_test_installs_the_browser_and_requires_it(tmp_path):
    dry_run = subprocess.run(
        ["make", "-n", "test", f"CHROMIUM={tmp_path / 'chromium'}", f"VENV={tmp_path / 'venv'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "apt-get install -y -q chromium" in dry_run
    assert "CCSC_REQUIRE_BROWSER=1" in dry_run
