"""Secure by default: the auth settings, read and checked before anything serves."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from service.settings import ConfigError, Settings

from ..support.authkit import PEPPER, SigningKey


def test_without_auth_settings_the_service_refuses_naming_the_variables():
    settings = Settings.from_env({})
    with pytest.raises(ConfigError) as info:
        settings.check_auth()
    for name in ("AUTH_API_KEY_PEPPER", "AUTH_JWKS_URL", "AUTH_JWT_PUBLIC_KEY", "AUTH_DISABLED"):
        assert name in str(info.value)


def test_auth_disabled_must_be_said_explicitly():
    Settings.from_env({"AUTH_DISABLED": "true"}).check_auth()
    with pytest.raises(ConfigError):
        Settings.from_env({"AUTH_DISABLED": "false"}).check_auth()
    with pytest.raises(ConfigError, match="AUTH_DISABLED must be true or false"):
        Settings.from_env({"AUTH_DISABLED": "yes please"})


def test_a_full_configuration_is_read():
    settings = Settings.from_env(
        {
            "AUTH_JWKS_URL": "https://idp.example.com/.well-known/jwks.json",
            "AUTH_JWT_ISSUER": "https://idp.example.com/",
            "AUTH_JWT_AUDIENCE": "collect-jobs",
            "AUTH_ORG_CLAIM": "https://example.com/org",
            "AUTH_ROLES_CLAIM": "groups",
            "AUTH_JWKS_MAX_STALE_SECONDS": "7200",
            "AUTH_API_KEY_PEPPER": PEPPER,
        }
    )
    settings.check_auth()
    assert (settings.auth_org_claim, settings.auth_roles_claim, settings.auth_jwks_max_stale_seconds) == (
        "https://example.com/org",
        "groups",
        7200.0,
    )
    assert PEPPER not in repr(settings)


def test_a_pem_key_with_escaped_newlines_is_read():
    pem = SigningKey.rsa("k").public_pem()
    settings = Settings.from_env({"AUTH_JWT_PUBLIC_KEY": pem.replace("\n", "\\n"), "AUTH_API_KEY_PEPPER": PEPPER})
    assert settings.auth_jwt_public_key == pem


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTH_JWKS_URL": "file:///etc/keys"}, "AUTH_JWKS_URL must be an http"),
        ({"AUTH_JWT_PUBLIC_KEY": "not a key"}, "AUTH_JWT_PUBLIC_KEY must be a PEM"),
        ({"AUTH_API_KEY_PEPPER": "short"}, "AUTH_API_KEY_PEPPER must be at least 32"),
        ({"AUTH_ORG_CLAIM": "org id"}, "AUTH_ORG_CLAIM must be a claim name"),
        ({"AUTH_JWKS_MAX_STALE_SECONDS": "-1"}, "AUTH_JWKS_MAX_STALE_SECONDS must be between"),
    ],
)
def test_bad_auth_settings_fail_fast_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_an_ed25519_key_is_refused_the_algorithms_are_rs_and_es_only():
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ConfigError, match="RSA or EC"):
        Settings.from_env({"AUTH_JWT_PUBLIC_KEY": pem})


def test_a_jwks_url_and_a_static_key_together_are_refused():
    pem = SigningKey.rsa("k").public_pem()
    settings = Settings.from_env({"AUTH_JWKS_URL": "https://idp/jwks", "AUTH_JWT_PUBLIC_KEY": pem, "AUTH_API_KEY_PEPPER": PEPPER})
    with pytest.raises(ConfigError, match="not both"):
        settings.check_auth()
