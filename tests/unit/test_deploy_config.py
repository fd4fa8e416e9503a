"""The deploy files and the configuration reference agree with the settings the
service reads: SETTINGS (service/settings.py) declares each variable once, and
these tests fail when the reader, the chart or the docs disagree with it, in
either direction."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml

from service.settings import ENV_VARS, NEVER, SETTINGS, TEMPLATE, VALUE, Settings, markdown_table

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


# The chart's own values under auth: that name Secrets, not settings.
AUTH_SECRET_VALUES = {"auth.existingSecret", "auth.existingSecretPepperKey", "auth.existingSecretPublicKeyKey"}
# Where the chart's default deliberately differs from the service's, and why.
CHART_DEFAULTS = {"config.logFormat": "json"}  # a pod's logs go to a collector, never a terminal


def chart_values() -> dict[str, object]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return {f"{section}.{key}": value for section in ("config", "auth") for key, value in values[section].items()}


def test_every_variable_the_chart_sets_is_read_by_the_service():
    names = chart_env_names()
    assert "MONGODB_URI" in names and "MAX_RUNNING_JOBS" in names
    assert names <= set(ENV_VARS), names - set(ENV_VARS)


def test_every_variable_the_compose_file_sets_is_read_by_the_service():
    names = compose_env_names()
    assert names <= set(ENV_VARS), names - set(ENV_VARS)


def test_each_setting_is_declared_once_and_the_settings_fields_are_exactly_the_table():
    assert len(ENV_VARS) == len(set(ENV_VARS))
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields - {"faults"} == {s.attribute for s in SETTINGS}
    assert "COLLECT_JOBS_FAULTS" not in ENV_VARS, "a test hook is not a production setting"


def test_the_configuration_page_is_the_table_and_lists_every_setting():
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    assert "<!-- generated:settings -->" in page
    assert not re.search(r"^\| `[A-Z][A-Z0-9_]*` \|", page, flags=re.M), "the table is generated, not written by hand"
    listed = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", markdown_table(), flags=re.M)
    assert listed == list(ENV_VARS)


def test_every_chart_value_setting_is_in_the_values_the_schema_and_the_configmap_with_the_services_default():
    values = chart_values()
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    configmap = (CHART / "templates" / "configmap.yaml").read_text()
    defaults = Settings()
    for setting in SETTINGS:
        if setting.chart != VALUE:
            continue
        key = setting.chart_value
        assert key in values, f"{setting.name}: no {key} in values.yaml"
        section, name = key.split(".")
        assert name in schema[section]["properties"], f"{setting.name}: no {key} in values.schema.json"
        assert re.search(rf"^  {setting.name}: {{{{ \.Values\.{re.escape(key)}\b", configmap, flags=re.M), (
            f"{setting.name}: the configmap does not set it from .Values.{key}"
        )
        expected = CHART_DEFAULTS.get(key, getattr(defaults, setting.attribute))
        assert values[key] == expected, f"{key} is {values[key]!r} in values.yaml, the service's default is {expected!r}"


def test_the_chart_sets_nothing_that_is_not_a_setting_it_may_set():
    by_value = {s.chart_value: s for s in SETTINGS if s.chart == VALUE}
    assert set(chart_values()) - AUTH_SECRET_VALUES <= set(by_value), set(chart_values()) - AUTH_SECRET_VALUES - set(by_value)
    set_by_chart = chart_env_names()
    allowed = {s.name for s in SETTINGS if s.chart in (VALUE, TEMPLATE)}
    assert set_by_chart <= allowed, set_by_chart - allowed
    assert {s.name for s in SETTINGS if s.chart == TEMPLATE} <= set_by_chart
    assert not set_by_chart & {s.name for s in SETTINGS if s.chart == NEVER}


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
