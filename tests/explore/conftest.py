"""Fixtures of the explore tests: a mapped synthetic run (helpers in explore_fixtures.py) and a browser.

The browser fixture finds Debian's chromium, installing it where missing and allowed (CI runs as root on a
clean machine); Playwright drives it without downloading a browser of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from explore_fixtures import CHROMIUM, CHROMIUM_ARGS, make_mapped_run


@pytest.fixture(scope="session")
def mapped_run(tmp_path_factory) -> Path:
    """A mapped synthetic run shared by the tests that only read it (copy it before writing into it)."""
    return make_mapped_run(tmp_path_factory.mktemp("explore") / "run")


@pytest.fixture
def run_copy(mapped_run, tmp_path) -> Path:
    """A private copy of the mapped run, for tests that write pages or figures."""
    return Path(shutil.copytree(mapped_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium; installed with apt where missing and we are root (as CI is)."""
    if not os.path.exists(CHROMIUM) and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            check=False,
            capture_output=True,
            env=env,
        )
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing and could not be installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium):
    """A headless chromium driven by Playwright (no browser download: Debian's build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
