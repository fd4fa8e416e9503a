"""The deploy files and the configuration reference agree with the settings the service reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "collect-jobs"


def chart_env_names() -> set[str]:
    configmap = (CHART / "templates" / "configmap.yaml").read_text()
    data = configmap.split("\ndata:\n", 1)[1]
    names = set(re.findall(r"^  ([A-Z][A-Z0-9_]*):", data, flags=re.M))
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    names |= set(re.findall(r"- name: ([A-Z][A-Z0-9_]*)$", deployment, flags=re.M))
    return names


def compose_env_names() -> set[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return set(compose["services"]["collect-jobs"]["environment"])


def documented_config_names() -> set[str]:
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", page, flags=re.M))


def test_every_variable_the_chart_sets_is_read_by_the_service():
    names = chart_env_names()
    assert "MONGODB_URI" in names and "MAX_RUNNING_JOBS" in names
    assert names <= set(ENV_VARS), names - set(ENV_VARS)


def test_every_variable_the_compose_file_sets_is_read_by_the_service():
    names = compose_env_names()
    assert names <= set(ENV_VARS), names - set(ENV_VARS)


def test_every_setting_is_documented_in_the_configuration_reference_and_nothing_else_is():
    assert documented_config_names() == set(ENV_VARS)


def test_the_chart_gives_the_service_time_to_hand_its_jobs_back():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["terminationGracePeriodSeconds"] > values["config"]["shutdownGraceSeconds"] + 5
    assert values["config"]["jobLeaseSeconds"] >= 2 * values["config"]["jobPollSeconds"]


def test_the_compose_file_runs_the_image_under_the_charts_security_context():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["collect-jobs"]
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert service["user"] == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert service["read_only"] is container["readOnlyRootFilesystem"] is True
    assert [t.split(":")[0] for t in service["tmpfs"]] == ["/tmp"]  # the chart's one emptyDir
    assert service["cap_drop"] == container["capabilities"]["drop"]
    assert ("no-new-privileges:true" in service["security_opt"]) is (container["allowPrivilegeEscalation"] is False)
    assert service["environment"]["PORT"] == "8080" and "127.0.0.1:8080:8080" in service["ports"]
