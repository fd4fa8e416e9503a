"""The documentation site builds strictly: a broken link or anchor, a missing
page or a page left out of the navigation fails, as `scripts/docs` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documentation_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "openapi.json").is_file()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "/api/v1/jobs/import" in api, "the API reference is rendered from the OpenAPI document"


def test_the_readme_stays_short_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in ("docs/reference/api.md", "docs/reference/configuration.md", "docs/tutorials/index.md"):
        assert target in readme, target
        assert (ROOT / target).is_file(), target
