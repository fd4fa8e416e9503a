"""The code itself: no unused imports or names, no undefined names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pyflakes_finds_nothing_in_the_service_tests_or_benchmarks():
    found = subprocess.run(
        [sys.executable, "-m", "pyflakes", "service", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout + found.stderr
