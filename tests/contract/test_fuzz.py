"""Schemathesis fuzzes the real service (`python -m service` on the test
database) from its own OpenAPI document: examples, coverage, fuzzing and
stateful sequences that follow the document's links (create a job, then get,
pause, resume or terminate it by the returned id). Every check is on except
those tests/contract/schemathesis.toml turns off, with its reasons: no 5xx,
every status, content type, header and body as documented, schema-violating
requests rejected. Besides the parameters the document declares, every
request also carries random values of headers the service reads (hooks.py:
Range, Idempotency-Key, If-None-Match, Last-Event-ID, Accept). Bounded by
examples per operation and a time budget; the
seed and schemathesis's report are printed into the test output."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ..support.devdb import with_database
from ..support.procs import ServiceProcess

HERE = Path(__file__).resolve().parent
ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
MAX_SECONDS = os.environ.get("FUZZ_MAX_SECONDS", "90")


def seed_dataset(url: str) -> None:
    """The dataset the document's examples name, so exports reach real data."""
    request = urllib.request.Request(
        f"{url}/api/v1/jobs/import?dataset=visits&types=visited:date",
        data=b"id,visited\n1,2017-08-03\n2,2017-09-14\n3,2018-01-02\n",
        headers={"Content-Type": "text/csv"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_response_that_breaks_the_document(db_server, db_name, tmp_path, capsys):
    seed = os.environ.get("FUZZ_SEED") or str(random.randrange(2**31))
    # Authentication off (every request acts in one org), but API keys on: a pepper is set.
    pepper = "fuzz-" + "0" * 40
    proc = ServiceProcess(
        with_database(db_server[0], db_name),
        tmp_path,
        "fuzz",
        JOB_POLL_SECONDS="0.2",
        AUTH_DISABLED="true",
        AUTH_API_KEY_PEPPER=pepper,
    ).start()
    try:
        seed_dataset(proc.url)
        command = [
            str(ST),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{proc.url}/api/v1/openapi.json",
            "--seed",
            seed,
            "--max-examples",
            MAX_EXAMPLES,
            "--max-time",
            MAX_SECONDS,
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.hooks"}
        run = subprocess.run(
            command, cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=int(MAX_SECONDS) + 300
        )
    finally:
        proc.stop()
    with capsys.disabled():
        print(f"\n--- schemathesis (seed {seed}; rerun with FUZZ_SEED={seed}) ---")
        print(run.stdout[-12_000:])
        if run.stderr.strip():
            print(run.stderr[-4_000:])
    server_errors = [line for line in proc.log().splitlines() if "unhandled error" in line]
    assert not server_errors, server_errors[:5]
    assert run.returncode == 0, f"schemathesis found failures (seed {seed}); its report is above"
