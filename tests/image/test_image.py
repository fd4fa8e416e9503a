"""The image, built from the Dockerfile by scripts/image-test and run with
podman the way the chart runs it: plainly, and under the chart's security
context (read-only root, /tmp as tmpfs, every capability dropped, no privilege
escalation, the fixed non-root user). Each replica answers its probes, runs an
import and an export through the API, reports its HEALTHCHECK healthy, and on
`podman stop` hands a running import to another replica within the grace
period."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from ..acceptance.test_replicas import finishes_exactly
from ..support.devdb import ROOT
from ..support.helpers import make_csv
from .conftest import MODES
from .pod import base_image, podman

MAX_IMAGE_BYTES = 200 * 10**6
COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12"]


def image_bytes(ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)


def test_the_image_has_no_compiler_and_no_build_leftovers(image):
    found = podman(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        f"for c in {' '.join(COMPILERS)}; do command -v $c; done; ls -d /wheels /src 2>/dev/null; true",
    ).stdout.split()
    assert found == []


FILES_DIGEST = """
import hashlib, importlib, pathlib, sys
root = pathlib.Path(importlib.import_module(sys.argv[1]).__file__).parent
digest = hashlib.sha256()
for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
    digest.update(str(path.relative_to(root)).encode() + bytes(1) + path.read_bytes())
print(root, len(list(root.rglob("*.py"))), digest.hexdigest())
"""


def test_the_image_runs_this_checkouts_service_with_every_file_of_it(image):
    """A stale build cache, or a file the package leaves out, would show here."""
    local = subprocess.run(
        [sys.executable, "-c", FILES_DIGEST, "service"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    inside = podman("run", "--rm", "--network=none", "--entrypoint", "python", image, "-c", FILES_DIGEST, "service")
    assert inside.stdout.split()[1:] == local[1:], (inside.stdout, local)


def test_the_image_is_under_200_mb_and_adds_little_to_its_base(image):
    size, base = image_bytes(image), image_bytes(base_image())
    assert size < MAX_IMAGE_BYTES, f"{size / 1e6:.1f} MB"
    # What the Dockerfile adds is the project's part, whatever the base weighs:
    # on the official python:3.11-slim (about 130 MB) it must stay well under 70 MB.
    assert size - base < 50 * 10**6, f"{(size - base) / 1e6:.1f} MB added by the Dockerfile"


def test_the_replica_answers_its_kubernetes_probes(replica):
    for kind, path in replica.spec.probes.items():
        status, body = replica.get(path)
        assert status == 200, (kind, path, body)
    assert replica.get(replica.spec.probes["readiness"])[1]["status"] == "ready"


def test_the_image_listens_on_the_port_the_chart_sends_its_probes_to(replica):
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", replica.image).stdout)
    assert f"{replica.spec.port}/tcp" in config["ExposedPorts"]
    assert f"PORT={replica.spec.port}" in config["Env"] and replica.spec.env["PORT"] == str(replica.spec.port)
    assert config["User"] == f"{replica.spec.user}:{replica.spec.group}"


def test_the_replica_runs_as_the_charts_non_root_user(replica):
    uid, gid = replica.exec("id", "-u").strip(), replica.exec("id", "-g").strip()
    assert (int(uid), int(gid)) == (replica.spec.user, replica.spec.group)
    assert replica.spec.run_as_non_root and int(uid) != 0
    status = dict(line.split(":\t", 1) for line in replica.exec("cat", "/proc/1/status").splitlines() if ":\t" in line)
    assert status["Uid"].split()[0] == uid, "the service itself (PID 1), not only exec, runs as the user"
    if replica.restricted:
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1"


def test_the_charts_writable_paths_are_writable_and_under_its_security_context_nothing_else(replica):
    assert replica.spec.writable, "the chart mounts an emptyDir where the service may write"
    for path in replica.spec.writable:
        replica.exec("sh", "-c", f"echo x > {path}/probe && rm {path}/probe")
    # /var/tmp is world-writable in the image: only a read-only root stops the service writing there.
    writes = podman("exec", replica.name, "sh", "-c", "echo x > /var/tmp/probe", check=False)
    if replica.restricted:
        assert replica.spec.read_only_root
        assert writes.returncode != 0 and "Read-only file system" in writes.stderr, writes.stderr
    else:
        assert writes.returncode == 0, writes.stderr


def test_the_images_healthcheck_reports_healthy(replica):
    result = podman("healthcheck", "run", replica.name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert replica.inspect("{{.State.Health.Status}}") == "healthy"


def test_the_api_refuses_a_request_without_credentials(replica):
    if "AUTH_API_KEY_PEPPER" not in replica.env:
        pytest.skip("this chart does not turn authentication on")
    status, body = replica.get("/api/v1/jobs")
    assert status == 401, body


async def test_a_csv_imported_through_the_api_exports_back_unchanged(replica, connect):
    api = await connect(replica)
    dataset = f"people_{'restricted' if replica.restricted else 'plain'}"
    body = make_csv(500)
    job = await api.start_import(replica, body, dataset=dataset)
    done = await api.wait(replica, job["id"], lambda j: j["state"] in ("completed", "failed"), "the import")
    assert done["state"] == "completed" and done["progress"]["inserted"] == 500, done

    async with api.http.post(
        f"{replica.url}/api/v1/jobs/export", json={"dataset": dataset, "neutralize_formulas": False}
    ) as resp:
        assert resp.status == 202, await resp.text()
        export = await resp.json()
    done = await api.wait(replica, export["id"], lambda j: j["state"] in ("completed", "failed"), "the export")
    assert done["state"] == "completed", done
    async with api.http.get(f"{replica.url}/api/v1/jobs/{export['id']}/result") as resp:
        assert resp.status == 200, await resp.text()
        exported = await resp.read()
    assert exported.replace(b"\r\n", b"\n") == body


@pytest.mark.parametrize("mode", MODES)
async def test_podman_stop_hands_a_running_import_to_another_replica_that_finishes_it_exactly(mode, launch, connect, records):
    rows = 20_000
    restricted = mode == "restricted"
    first, second = launch("a", restricted=restricted), launch("b", restricted=restricted)
    api = await connect(first)
    job = await api.start_import(first, make_csv(rows), batch_size=200)
    running = await api.wait(first, job["id"], lambda j: j["progress"].get("processed", 0) >= 400 and j["owner"])
    owner, survivor = (first, second) if running["owner"] == first.name else (second, first)
    assert running["owner"] == owner.name and running["state"] == "running"

    code, took = await asyncio.to_thread(owner.stop)
    stopped = time.monotonic()
    assert code == 0, f"exit {code} after {took:.1f}s (137: killed at the end of the grace period)\n{owner.logs()}"
    assert took < owner.spec.grace_seconds
    handed = await api.job(survivor, job["id"])
    assert handed["state"] == "running" and handed["progress"]["processed"] < rows, handed
    adopted = await api.wait(survivor, job["id"], lambda j: j["owner"] == survivor.name, "adoption")
    lease = float(owner.spec.env["JOB_LEASE_SECONDS"])
    # Handed back, not expired: adopted before the owner's lease could run out.
    assert time.monotonic() - stopped < lease, adopted
    await finishes_exactly(api, survivor, records, job["id"], rows)
