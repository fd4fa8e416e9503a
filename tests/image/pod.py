"""The chart's pod, run with podman: what the rendered chart says the container
gets (environment, port, user, writable paths, capabilities, grace period,
probes) turned into `podman run` arguments, so the image test repeats none of
it. A value changed in the chart is a value changed in the test."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..support.devdb import ROOT, free_port

CHART = ROOT / "helm" / "collect-jobs"
HELM = ROOT / ".tools" / "bin" / "helm"
QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with the settings scripts/image-test wrote (CONTAINERS_CONF)."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def quantity_bytes(value: str) -> int:
    for suffix, scale in QUANTITY.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * scale
    return int(value)


@dataclass
class PodSpec:
    """The collect-jobs container of the chart's Deployment, as rendered."""

    env: dict[str, str]
    replica_id_from_pod_name: list[str]
    port: int
    user: int
    group: int
    run_as_non_root: bool
    read_only_root: bool
    no_new_privileges: bool
    drop_capabilities: list[str]
    writable: dict[str, int] = field(default_factory=dict)  # emptyDir mount path -> size limit in bytes
    grace_seconds: int = 30
    probes: dict[str, str] = field(default_factory=dict)  # startup/liveness/readiness -> path

    @classmethod
    def render(cls, values: dict[str, str], existing_secrets: dict[str, dict[str, str]]) -> PodSpec:
        """Renders the chart with ``values`` (``--set``); ``existing_secrets``
        are the Secrets an operator made beforehand, which the chart names."""
        sets = []
        for key, value in values.items():
            sets += ["--set", key + "=" + value.replace(",", r"\,")]  # --set splits on unescaped commas
        out = subprocess.run([str(HELM), "template", "image-test", str(CHART), *sets], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
        for name, data in existing_secrets.items():
            docs[("Secret", name)] = {"stringData": data}
        deployment = next(d for (kind, _), d in docs.items() if kind == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "collect-jobs")

        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(docs[("ConfigMap", source["configMapRef"]["name"])]["data"])
        from_pod_name = []
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            elif ref := var["valueFrom"].get("secretKeyRef"):
                env[var["name"]] = secret_value(docs[("Secret", ref["name"])], ref["key"])
            elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
                from_pod_name.append(var["name"])
            else:
                raise AssertionError(f"the image test does not know how to supply {var}")

        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        writable = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume, f"the image test only knows emptyDir volumes, not {volume}"
            writable[mount["mountPath"]] = quantity_bytes(str(volume["emptyDir"].get("sizeLimit", "64Mi")))
        return cls(
            env=env,
            replica_id_from_pod_name=from_pod_name,
            port=next(p["containerPort"] for p in container["ports"] if p["name"] == "http"),
            user=context["runAsUser"],
            group=context.get("runAsGroup", context["runAsUser"]),
            run_as_non_root=context.get("runAsNonRoot", False),
            read_only_root=context.get("readOnlyRootFilesystem", False),
            no_new_privileges=context.get("allowPrivilegeEscalation") is False,
            drop_capabilities=list(context.get("capabilities", {}).get("drop", [])),
            writable=writable,
            grace_seconds=pod["terminationGracePeriodSeconds"],
            probes={kind: container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("startup", "liveness", "readiness")},
        )

    def security_args(self) -> list[str]:
        """The pod's security context and volumes as podman flags: a read-only
        root, the emptyDirs as tmpfs, capabilities dropped, no privilege
        escalation, the fixed non-root user."""
        # Podman's --read-only alone still mounts tmpfs on /run, /tmp and
        # /var/tmp; a pod has only the volumes the chart gives it.
        args = ["--read-only", "--read-only-tmpfs=false"] if self.read_only_root else []
        for path, size in self.writable.items():
            args += ["--tmpfs", f"{path}:rw,nosuid,nodev,size={size},mode=1777"]
        args += [f"--cap-drop={cap}" for cap in self.drop_capabilities]
        if self.no_new_privileges:
            args += ["--security-opt", "no-new-privileges"]
        return args + ["--user", f"{self.user}:{self.group}"]


def secret_value(secret: dict, key: str) -> str:
    if key in secret.get("stringData", {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


class Container:
    """One replica of the image, on the host's network (so it reaches the test
    database on 127.0.0.1). A pod has its own network namespace and the chart's
    port; here every replica shares the host's, so each listens on a free port
    of 127.0.0.1 instead: PORT and HOST are the only values not from the chart."""

    def __init__(self, image: str, spec: PodSpec, name: str, *, restricted: bool) -> None:
        self.image = image
        self.spec = spec
        self.name = name
        self.restricted = restricted
        self.port = free_port()
        self.env = {**spec.env, **{var: name for var in spec.replica_id_from_pod_name}}
        self.env.update(HOST="127.0.0.1", PORT=str(self.port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> Container:
        podman("rm", "--force", "--time=0", self.name, check=False)
        args = ["run", "--detach", "--name", self.name, "--network=host"]
        # No systemd here to run the HEALTHCHECK's timer; the test runs the
        # image's check itself (`podman healthcheck run`).
        args += ["--health-interval=disable"]
        if self.restricted:
            args += self.spec.security_args()
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        podman(*args, self.image)
        self.wait_for(self.spec.probes["startup"], timeout)
        return self

    def wait_for(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            if not self.running():
                raise AssertionError(f"{self.name} exited before answering {path}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not answer {path} within {timeout}s:\n{self.logs()}")
            time.sleep(0.2)

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def stop(self) -> tuple[int, float]:
        """`podman stop` with the pod's grace period, as the kubelet stops a pod:
        SIGTERM, then SIGKILL when the grace period is over. Returns the exit
        code (137 when it had to be killed) and the seconds it took."""
        started = time.monotonic()
        podman("stop", f"--time={self.spec.grace_seconds}", self.name, timeout=self.spec.grace_seconds + 60)
        took = time.monotonic() - started
        return int(self.inspect("{{.State.ExitCode}}")), took

    def credentials(self, org: str) -> dict[str, str]:
        """Headers for the API. Where the chart gives the pod an API-key pepper
        (authentication on), an admin key of ``org`` is made inside the
        container, as the chart's NOTES tell an operator to (`kubectl exec ...
        python -m service api-keys create`)."""
        if "AUTH_API_KEY_PEPPER" not in self.env:
            return {}
        secret = self.exec(
            "python", "-m", "service", "api-keys", "create", "--org", org, "--role", "admin", "--name", "image-test"
        ).strip()
        return {"Authorization": f"Bearer {secret}"}

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def remove(self, log_dir: Path | None = None) -> None:
        if log_dir is not None:
            (log_dir / f"{self.name}.log").write_text(self.logs())
        podman("rm", "--force", "--time=0", self.name, check=False)


def image_under_test() -> str | None:
    return os.environ.get("COLLECT_JOBS_IMAGE")


def base_image() -> str:
    """The Dockerfile's first FROM: the base both stages build on."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.upper().startswith("FROM "):
            return line.split()[1]
    raise AssertionError("the Dockerfile has no FROM")
