"""Finding 9: development defaults reach nobody else. The service refuses
AUTH_DISABLED unless it listens on loopback only; scripts/run and the compose
file publish the service and the unauthenticated database on 127.0.0.1 only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.settings import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "collect-jobs.example.com"])
def test_auth_disabled_is_refused_on_any_address_but_loopback(host):
    settings = Settings.from_env({"AUTH_DISABLED": "true", "HOST": host})
    with pytest.raises(ConfigError, match="AUTH_DISABLED=true needs HOST to be a loopback address"):
        settings.check_auth()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_auth_disabled_is_accepted_on_loopback(host):
    Settings.from_env({"AUTH_DISABLED": "true", "HOST": host}).check_auth()


def test_the_service_listens_on_loopback_unless_told_otherwise():
    assert Settings.from_env({}).host == "127.0.0.1"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+HOST=0\.0\.0\.0", dockerfile, flags=re.M), "the image listens on the pod's address"


def test_the_compose_file_publishes_every_port_on_loopback_only_and_never_disables_auth():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "AUTH_DISABLED" not in services["collect-jobs"]["environment"]


def test_scripts_run_binds_the_service_to_loopback():
    script = (ROOT / "scripts" / "run").read_text()
    assert 'export HOST="${HOST:-127.0.0.1}"' in script
