"""The Docker image and Helm chart, checked with the real tools (built or
installed by scripts/bootstrap): helm lint and template, the rendered manifests
validated offline against the Kubernetes schemas, hadolint, yamllint."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "collect-jobs"
BIN = ROOT / ".venv" / "bin"
HELM = ROOT / ".tools" / "bin" / "helm"
URI = "mongodb://mongo-0.mongo,mongo-1.mongo/collect?replicaSet=rs0"
SET_URI = "mongodb.uri=" + URI.replace(",", "\\,")  # helm --set splits on unescaped commas

TOKENS = ["--set", "auth.jwtIssuer=https://idp.example.com/", "--set", "auth.jwtAudience=collect-jobs"]
AUTH = ["--set", "auth.existingSecret=jobs-auth", "--set", "auth.jwksUrl=https://idp.example.com/.well-known/jwks.json", *TOKENS]

VARIANTS = {
    "defaults": ["--set", SET_URI, *AUTH],
    "existing-secret": ["--set", "mongodb.existingSecret=prod-mongo", "--set", "mongodb.existingSecretKey=uri", *AUTH],
    "pem-key": [
        "--set",
        SET_URI,
        "--set",
        "auth.existingSecret=jobs-auth",
        "--set",
        "auth.existingSecretPublicKeyKey=jwt.pem",
        *TOKENS,
    ],
    "everything-on": [
        "--set",
        SET_URI,
        *AUTH,
        "--set",
        "ingress.enabled=true",
        "--set",
        "autoscaling.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
    ],
}


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def helm() -> str:
    if not HELM.exists():
        subprocess.run([str(ROOT / "scripts" / "build-helm")], check=True)
    return str(HELM)


def render(helm: str, variant: str) -> list[dict]:
    out = run(helm, "template", "jobs", str(CHART), *VARIANTS[variant])
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_helm_lint_strict_passes(helm):
    run(helm, "lint", "--strict", str(CHART), *VARIANTS["defaults"])


def test_the_chart_refuses_to_render_without_a_database(helm):
    result = subprocess.run([helm, "template", "jobs", str(CHART), *AUTH], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "mongodb.uri" in result.stderr


def test_values_outside_the_schema_are_refused(helm):
    result = subprocess.run(
        [helm, "template", "jobs", str(CHART), *VARIANTS["defaults"], "--set", "config.logLevel=LOUD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "logLevel" in result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_are_valid_kubernetes(helm, variant, tmp_path):
    docs = render(helm, variant)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Pod"} <= kinds
    checked = 0
    for i, doc in enumerate(docs):
        if doc["kind"] == "ServiceMonitor":  # a CRD: no schema in the Kubernetes bundle
            continue
        path = tmp_path / f"{i}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        run(str(BIN / "kubernetes-validate"), "--strict", "-k", "1.30.0", str(path))
        checked += 1
    assert checked >= 5


def test_the_deployment_is_what_an_operator_can_trust(helm):
    docs = {d["kind"]: d for d in render(helm, "defaults")}
    deployment = docs["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    grace = int(docs["ConfigMap"]["data"]["SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > grace
    uri = next(e for e in container["env"] if e["name"] == "MONGODB_URI")
    assert uri["valueFrom"]["secretKeyRef"]["name"] == "jobs-collect-jobs"
    assert docs["Secret"]["stringData"]["mongodb-uri"] == URI


def test_an_existing_secret_is_used_instead_of_creating_one(helm):
    docs = render(helm, "existing-secret")
    assert "Secret" not in {d["kind"] for d in docs}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    uri = next(e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "MONGODB_URI")
    assert uri["valueFrom"]["secretKeyRef"] == {"name": "prod-mongo", "key": "uri"}


def test_hadolint_passes_on_the_dockerfile():
    run(str(BIN / "hadolint"), "Dockerfile")


def test_yamllint_passes_on_the_chart_values_and_compose_file():
    run(
        str(BIN / "yamllint"),
        "-c",
        ".yamllint.yaml",
        "helm/collect-jobs/values.yaml",
        "helm/collect-jobs/Chart.yaml",
        "docker-compose.yml",
    )


def test_the_image_the_chart_and_the_package_have_one_version():
    package = configparser.ConfigParser()
    package.read(ROOT / "setup.cfg")
    version = package["metadata"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert f'"collect-jobs=={version}"' in (ROOT / "Dockerfile").read_text()


def test_the_dockerfile_runs_the_service_as_a_fixed_non_root_user_with_exec_form():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "service"]' in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert dockerfile.count("FROM ") == 2


def test_the_chart_never_runs_without_authentication(helm):
    result = subprocess.run([helm, "template", "jobs", str(CHART), "--set", SET_URI], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "auth.existingSecret" in result.stderr
    for variant in VARIANTS:
        for doc in render(helm, variant):
            assert "AUTH_DISABLED" not in yaml.safe_dump(doc), variant


def test_auth_settings_reach_the_pods_and_secrets_come_from_the_existing_secret(helm):
    docs = {d["kind"]: d for d in render(helm, "defaults")}
    data = docs["ConfigMap"]["data"]
    assert data["AUTH_JWKS_URL"] == "https://idp.example.com/.well-known/jwks.json"
    assert (data["AUTH_ORG_CLAIM"], data["AUTH_ROLES_CLAIM"]) == ("org_id", "roles")
    env = {e["name"]: e for e in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AUTH_API_KEY_PEPPER"]["valueFrom"]["secretKeyRef"] == {"name": "jobs-auth", "key": "api-key-pepper"}
    assert "AUTH_JWT_PUBLIC_KEY" not in env
    pem = {d["kind"]: d for d in render(helm, "pem-key")}
    env = {e["name"]: e for e in pem["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AUTH_JWT_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "jobs-auth", "key": "jwt.pem"}


def _routed(path: str, rules: list[tuple[str, str]]) -> bool:
    """Whether an Ingress with these (path, pathType) rules sends ``path`` to the service."""
    for rule, kind in rules:
        if kind == "Exact" and path == rule:
            return True
        if kind == "Prefix" and (rule == "/" or path == rule or path.startswith(rule.rstrip("/") + "/")):
            return True
    return False


def test_the_ingress_routes_the_api_and_the_console_and_never_metrics_or_probes(helm):
    ingress = next(d for d in render(helm, "everything-on") if d["kind"] == "Ingress")
    rules = [(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    for path in ("/", "/api/v1/jobs", "/api/v1/docs", "/console/abc123/main.js"):
        assert _routed(path, rules), path
    for path in ("/metrics", "/healthz", "/readyz", "/metrics/"):
        assert not _routed(path, rules), path


def test_a_network_policy_limits_who_reaches_the_pods_and_where_they_go(helm):
    docs = render(helm, "defaults")
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]
    pods = next(d for d in docs if d["kind"] == "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == pods
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    sources = policy["ingress"][0]["from"]
    namespaces = [
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in sources if "namespaceSelector" in s
    ]
    assert namespaces == ["ingress-nginx", "monitoring"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (27017, "TCP"), (443, "TCP")} <= egress_ports

    custom = run(
        helm,
        "template",
        "jobs",
        str(CHART),
        *VARIANTS["defaults"],
        "--set",
        "networkPolicy.ingressNamespace=traefik",
        "--set",
        "networkPolicy.metricsNamespace=observability",
        "--set",
        "networkPolicy.mongodbCidrs={10.0.5.0/24}",
        "--set",
        "networkPolicy.jwksCidrs={203.0.113.7/32}",
    )
    policy = next(d for d in yaml.safe_load_all(custom) if d and d["kind"] == "NetworkPolicy")["spec"]
    names = [
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for s in policy["ingress"][0]["from"]
        if "namespaceSelector" in s
    ]
    assert names == ["traefik", "observability"]
    cidrs = [b["ipBlock"]["cidr"] for rule in policy["egress"] for b in rule.get("to", []) if "ipBlock" in b]
    assert cidrs == ["10.0.5.0/24", "203.0.113.7/32"]

    off = run(helm, "template", "jobs", str(CHART), *VARIANTS["defaults"], "--set", "networkPolicy.enabled=false")
    assert "kind: NetworkPolicy" not in off


def test_jwt_mode_without_an_issuer_and_audience_does_not_render(helm):
    result = subprocess.run(
        [
            helm,
            "template",
            "jobs",
            str(CHART),
            "--set",
            SET_URI,
            "--set",
            "auth.existingSecret=jobs-auth",
            "--set",
            "auth.jwksUrl=https://idp.example.com/.well-known/jwks.json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "auth.jwtAudience" in result.stderr
    result = subprocess.run(
        [helm, "template", "jobs", str(CHART), *VARIANTS["defaults"], "--set", "auth.jwksUrl=http://idp.example.com/jwks"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "jwksUrl" in result.stderr
