"""Configuration: one function reads the environment, validates it, fails fast."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

DEFAULT_DATABASE = "collect"
# The addresses that only this machine can reach: where AUTH_DISABLED may listen,
# and where AUTH_JWKS_ALLOW_HTTP_LOOPBACK lets the JWKS be read over plain http.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})
MAX_CPU_WORKERS = 4


class ConfigError(ValueError):
    """A setting in the environment has a value the service cannot use."""


@dataclass(frozen=True)
class MongoSettings:
    """Where the database is: the URI as given plus the database named in its path."""

    uri: str
    database: str

    @classmethod
    def from_uri(cls, uri: str) -> MongoSettings:
        # Parsed by hand rather than by pymongo.uri_parser, which resolves
        # mongodb+srv hosts through DNS: start-up validation must not need the network.
        parts = urlsplit(uri)
        if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc:
            raise ConfigError(f"MONGODB_URI must look like mongodb://host[:port][,host...]/database, got {_redact(uri)!r}")
        database = parts.path.lstrip("/") or DEFAULT_DATABASE
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", database):
            raise ConfigError(f"MONGODB_URI names the database {database!r}; use letters, digits, '_' or '-'")
        return cls(uri=uri, database=database)


def _redact(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)


@dataclass(frozen=True)
class Settings:
    """Every setting the service reads; README's configuration table lists the same names."""

    mongo: MongoSettings = MongoSettings("mongodb://127.0.0.1:27017/collect", DEFAULT_DATABASE)
    # Loopback unless HOST says otherwise: the image sets HOST=0.0.0.0 for the pod.
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    default_org_id: str = "default"
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_field_size: int = 128 * 1024
    max_imports_per_org: int = 1
    max_running_jobs: int = 4
    job_poll_seconds: float = 1.0
    job_lease_seconds: float = 15.0
    shutdown_grace_seconds: float = 20.0
    db_retry_seconds: float = 60.0
    replica_id: str = ""
    default_phone_region: str = "US"
    batch_max_bytes: int = 2 * 1024 * 1024
    log_format: str = "auto"
    max_event_streams_per_org: int = 100
    result_retention_days: float = 7.0
    job_retention_days: float = 30.0
    retention_sweep_seconds: float = 3600.0
    # How long an upload, or chunks without a files document, may have no job
    # before the sweep reclaims them (judged from the upload's start); longer
    # than the longest upload.
    upload_grace_seconds: float = 6 * 3600.0
    audit_retention_days: float = 400.0
    # A failed job older than this is terminated (rolled back) by the sweep.
    failed_job_retention_days: float = 30.0
    # How long after completion an import or teams job may be undone; retention
    # then drops what an undo needs (a teams job's undo log) and says so.
    job_undo_days: float = 7.0
    # Processes that parse, type and encode an import's batches; 1 builds them in
    # the event loop's process. One by default: workers cost CPU per row and,
    # where the database sets the pace, make no import faster (README,
    # "Workers only where they pay"). JOB_WORKERS=0 asks for cpu_workers().
    job_workers: int = 1
    guard_rows: int = 1000
    db_timeout_seconds: float = 30.0
    rollback_give_up_seconds: float = 600.0
    max_queued_per_org: int = 100
    max_upload_bytes_per_org: int = 20 * 1024**3
    max_streams: int = 8
    max_streams_per_org: int = 2
    # A streamed download whose client accepted no bytes for this long ends
    # (terminated) and frees its slot; an upload that sent nothing for
    # UPLOAD_IDLE_SECONDS is cut with a 408.
    stream_idle_seconds: float = 60.0
    upload_idle_seconds: float = 60.0
    max_uploads_per_org: int = 4
    max_exports_per_org: int = 2
    # Per-org storage: imported records (measured as the CSV bytes imported)
    # and stored export results (the CSV bytes written).
    max_record_bytes_per_org: int = 100 * 1024**3
    max_result_bytes_per_org: int = 20 * 1024**3
    # Test builds only: failure points to trigger, e.g. "import.rollback".
    faults: frozenset[str] = frozenset()
    # Authentication (service/auth). Secure by default: check_auth() refuses a
    # configuration that neither sets it up nor disables it explicitly.
    auth_disabled: bool = False
    auth_jwks_url: str = ""
    auth_jwt_public_key: str = ""
    auth_jwt_issuer: str = ""
    auth_jwt_audience: str = ""
    auth_org_claim: str = "org_id"
    auth_roles_claim: str = "roles"
    auth_jwks_min_refresh_seconds: float = 60.0
    # How long cached JWKS keys are trusted after the last good read: past it,
    # while the provider stays unreachable, tokens are refused with a 503.
    auth_jwks_max_stale_seconds: float = 86400.0
    # Development only: read AUTH_JWKS_URL over http when it names a loopback host.
    auth_jwks_allow_http_loopback: bool = False
    # The roles-claim value that acts in any organisation named in X-Org-Id.
    # Namespaced, so that a "support" role other applications of a shared
    # identity provider hand out does not cross organisations here.
    auth_support_role: str = "collect-jobs:support"
    auth_api_key_pepper: str = dataclasses.field(default="", repr=False)

    @property
    def lease_margin_seconds(self) -> float:
        """How long before its lease expires a runner stops sending data writes:
        a third of the lease, at least one second. It covers the drift of the
        two clocks involved over one lease (the runner's monotonic clock and the
        database's) and a write's trip to the server."""
        return max(1.0, self.job_lease_seconds / 3)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, parse in _READERS.items():
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            field, value = parse(name, raw.strip())
            values[field] = value
        if values.get("job_workers") == 0:
            values["job_workers"] = cpu_workers()
        settings = cls(**values)
        if settings.result_retention_days > settings.job_retention_days:
            raise ConfigError("RESULT_RETENTION_DAYS must not be more than JOB_RETENTION_DAYS: a job's result goes with the job")
        if settings.job_poll_seconds * 2 > settings.job_lease_seconds - settings.lease_margin_seconds:
            raise ConfigError(
                "JOB_LEASE_SECONDS must leave room for two renewals (JOB_POLL_SECONDS) before its safety margin "
                f"({settings.lease_margin_seconds:g} s); raise JOB_LEASE_SECONDS or lower JOB_POLL_SECONDS"
            )
        return settings

    def check_auth(self) -> None:
        """Refuses to serve without authentication unless AUTH_DISABLED=true says so.
        Kept out of from_env so a caller may read settings it will not serve with
        (tests, tools); ``python -m service`` and the app's startup both call it."""
        if self.auth_disabled:
            if self.host not in LOOPBACK_HOSTS:
                raise ConfigError(
                    f"AUTH_DISABLED=true needs HOST to be a loopback address (127.0.0.1, ::1 or localhost), got "
                    f"{self.host!r}: without authentication every request acts as an admin, so only this machine "
                    "may reach the service. Configure authentication (AUTH_API_KEY_PEPPER) to listen elsewhere."
                )
            return
        if not self.auth_api_key_pepper:
            raise ConfigError(
                "Authentication is not configured: set AUTH_API_KEY_PEPPER (API keys) and, for tokens of your "
                "identity provider, AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY; or set AUTH_DISABLED=true to run "
                "without authentication (local development only: every request acts as an admin of DEFAULT_ORG_ID)."
            )
        if self.auth_jwks_url and self.auth_jwt_public_key:
            raise ConfigError("Set AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY, not both.")
        if self.auth_jwks_url or self.auth_jwt_public_key:
            # Without both, a token the same provider issued to another application is accepted.
            for name, value in (("AUTH_JWT_ISSUER", self.auth_jwt_issuer), ("AUTH_JWT_AUDIENCE", self.auth_jwt_audience)):
                if not value:
                    raise ConfigError(
                        f"{name} is required with AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY: tokens are accepted only from "
                        "your identity provider's issuer (iss) and for this service's audience (aud)."
                    )
        if self.auth_jwks_url:
            parts = urlsplit(self.auth_jwks_url)
            loopback = parts.hostname is not None and parts.hostname.lower() in LOOPBACK_HOSTS
            if parts.scheme != "https" and not (self.auth_jwks_allow_http_loopback and loopback):
                raise ConfigError(
                    "AUTH_JWKS_URL must be https: the keys read from it decide whose tokens are genuine. "
                    "For a local identity provider on 127.0.0.1, ::1 or localhost only, set AUTH_JWKS_ALLOW_HTTP_LOOPBACK=true."
                )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def cpu_workers() -> int:
    """What JOB_WORKERS=0 means: the CPUs this process may use (its affinity, and
    its cgroup's cpu.max quota, which a Kubernetes CPU limit sets), at most 4."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, min(cpus, MAX_CPU_WORKERS))


def _int(field: str, low: int, high: int) -> Callable[[str, str], tuple[str, int]]:
    def parse(name: str, raw: str) -> tuple[str, int]:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return field, value

    return parse


def _seconds(field: str, low: float, high: float) -> Callable[[str, str], tuple[str, float]]:
    def parse(name: str, raw: str) -> tuple[str, float]:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds, got {raw}")
        return field, value

    return parse


def _choice(field: str, choices: tuple[str, ...]) -> Callable[[str, str], tuple[str, str]]:
    def parse(name: str, raw: str) -> tuple[str, str]:
        if raw.upper() not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return field, raw.upper()

    return parse


def _lower_choice(field: str, choices: tuple[str, ...]) -> Callable[[str, str], tuple[str, str]]:
    def parse(name: str, raw: str) -> tuple[str, str]:
        if raw.lower() not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return field, raw.lower()

    return parse


def _days(field: str) -> Callable[[str, str], tuple[str, float]]:
    def parse(name: str, raw: str) -> tuple[str, float]:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of days, got {raw!r}") from None
        if not 0 < value <= 36500:
            raise ConfigError(f"{name} must be more than 0 and at most 36500 days, got {raw}")
        return field, value

    return parse


def _pattern(field: str, pattern: str, what: str) -> Callable[[str, str], tuple[str, str]]:
    def parse(name: str, raw: str) -> tuple[str, str]:
        if not re.fullmatch(pattern, raw):
            raise ConfigError(f"{name} must be {what}, got {raw!r}")
        return field, raw

    return parse


def _region(name: str, raw: str) -> tuple[str, str]:
    if raw.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{name} must be a region code such as US, GB or DE, got {raw!r}")
    return "default_phone_region", raw.upper()


def _faults(name: str, raw: str) -> tuple[str, frozenset[str]]:
    points = frozenset(p.strip() for p in raw.split(",") if p.strip())
    if not all(re.fullmatch(r"[a-z]+\.[a-z_]+", p) for p in points):
        raise ConfigError(f"{name} must list kind.point names, e.g. import.rollback, got {raw!r}")
    return "faults", points


def _bool(field: str) -> Callable[[str, str], tuple[str, bool]]:
    def parse(name: str, raw: str) -> tuple[str, bool]:
        if raw.lower() not in ("true", "false"):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return field, raw.lower() == "true"

    return parse


def _text(field: str, max_length: int = 1000) -> Callable[[str, str], tuple[str, str]]:
    def parse(name: str, raw: str) -> tuple[str, str]:
        if len(raw) > max_length:
            raise ConfigError(f"{name} must be at most {max_length} characters")
        return field, raw

    return parse


def _url(name: str, raw: str) -> tuple[str, str]:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw[:200]!r}")
    return "auth_jwks_url", raw


def _public_key(name: str, raw: str) -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pem = raw.replace("\\n", "\n").strip() + "\n"  # an env file may carry the newlines as \\n
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ConfigError(f"{name} must be a PEM public key (-----BEGIN PUBLIC KEY-----...)") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ConfigError(f"{name} must be an RSA or EC public key (RS256/ES256 family)")
    return "auth_jwt_public_key", pem


def _pepper(name: str, raw: str) -> tuple[str, str]:
    if len(raw) < 32:
        raise ConfigError(f"{name} must be at least 32 characters (e.g. openssl rand -hex 32)")
    return "auth_api_key_pepper", raw


def _mongo(name: str, raw: str) -> tuple[str, MongoSettings]:
    return "mongo", MongoSettings.from_uri(raw)


_READERS: dict[str, Callable[[str, str], tuple[str, Any]]] = {
    "MONGODB_URI": _mongo,
    "HOST": _pattern("host", r"[A-Za-z0-9.:\[\]-]+", "a host name or IP address"),
    "PORT": _int("port", 1, 65535),
    "LOG_LEVEL": _choice("log_level", ("DEBUG", "INFO", "WARNING", "ERROR")),
    "DEFAULT_ORG_ID": _pattern("default_org_id", r"[A-Za-z0-9_-]{1,64}", "1-64 letters, digits, '_' or '-'"),
    "MAX_UPLOAD_BYTES": _int("max_upload_bytes", 1024, 1 << 40),
    "MAX_FIELD_SIZE": _int("max_field_size", 64, 64 * 1024 * 1024),
    "MAX_IMPORTS_PER_ORG": _int("max_imports_per_org", 1, 1000),
    "MAX_RUNNING_JOBS": _int("max_running_jobs", 1, 1000),
    "JOB_POLL_SECONDS": _seconds("job_poll_seconds", 0.05, 60),
    "JOB_LEASE_SECONDS": _seconds("job_lease_seconds", 1, 3600),
    "SHUTDOWN_GRACE_SECONDS": _seconds("shutdown_grace_seconds", 0, 3600),
    "DB_RETRY_SECONDS": _seconds("db_retry_seconds", 0, 86400),
    "REPLICA_ID": _pattern("replica_id", r"[A-Za-z0-9_.-]{1,128}", "1-128 letters, digits, '_', '.' or '-'"),
    "DEFAULT_PHONE_REGION": _region,
    "BATCH_MAX_BYTES": _int("batch_max_bytes", 64 * 1024, 1024 * 1024 * 1024),
    "LOG_FORMAT": _lower_choice("log_format", ("auto", "json", "text")),
    "MAX_EVENT_STREAMS_PER_ORG": _int("max_event_streams_per_org", 1, 100_000),
    "RESULT_RETENTION_DAYS": _days("result_retention_days"),
    "JOB_RETENTION_DAYS": _days("job_retention_days"),
    "RETENTION_SWEEP_SECONDS": _seconds("retention_sweep_seconds", 1, 86400),
    "UPLOAD_GRACE_SECONDS": _seconds("upload_grace_seconds", 60, 7 * 86400),
    "AUDIT_RETENTION_DAYS": _days("audit_retention_days"),
    "FAILED_JOB_RETENTION_DAYS": _days("failed_job_retention_days"),
    "JOB_UNDO_DAYS": _days("job_undo_days"),
    "JOB_WORKERS": _int("job_workers", 0, 64),
    "GUARD_ROWS": _int("guard_rows", 10, 100_000),
    "DB_TIMEOUT_SECONDS": _seconds("db_timeout_seconds", 1, 3600),
    "ROLLBACK_GIVE_UP_SECONDS": _seconds("rollback_give_up_seconds", 0, 86400 * 7),
    "MAX_QUEUED_PER_ORG": _int("max_queued_per_org", 1, 1_000_000),
    "MAX_UPLOAD_BYTES_PER_ORG": _int("max_upload_bytes_per_org", 1024, 1 << 50),
    "MAX_STREAMS": _int("max_streams", 1, 10_000),
    "MAX_STREAMS_PER_ORG": _int("max_streams_per_org", 1, 10_000),
    "STREAM_IDLE_SECONDS": _seconds("stream_idle_seconds", 1, 3600),
    "UPLOAD_IDLE_SECONDS": _seconds("upload_idle_seconds", 1, 3600),
    "MAX_UPLOADS_PER_ORG": _int("max_uploads_per_org", 1, 10_000),
    "MAX_EXPORTS_PER_ORG": _int("max_exports_per_org", 1, 1000),
    "MAX_RECORD_BYTES_PER_ORG": _int("max_record_bytes_per_org", 1024, 1 << 60),
    "MAX_RESULT_BYTES_PER_ORG": _int("max_result_bytes_per_org", 1024, 1 << 60),
    "COLLECT_JOBS_FAULTS": _faults,
    "AUTH_DISABLED": _bool("auth_disabled"),
    "AUTH_JWKS_URL": _url,
    "AUTH_JWT_PUBLIC_KEY": _public_key,
    "AUTH_JWT_ISSUER": _text("auth_jwt_issuer"),
    "AUTH_JWT_AUDIENCE": _text("auth_jwt_audience"),
    "AUTH_ORG_CLAIM": _pattern("auth_org_claim", r"[A-Za-z0-9_:./-]{1,100}", "a claim name"),
    "AUTH_ROLES_CLAIM": _pattern("auth_roles_claim", r"[A-Za-z0-9_:./-]{1,100}", "a claim name"),
    "AUTH_JWKS_MIN_REFRESH_SECONDS": _seconds("auth_jwks_min_refresh_seconds", 0, 86400),
    "AUTH_JWKS_MAX_STALE_SECONDS": _seconds("auth_jwks_max_stale_seconds", 1, 30 * 86400),
    "AUTH_JWKS_ALLOW_HTTP_LOOPBACK": _bool("auth_jwks_allow_http_loopback"),
    "AUTH_SUPPORT_ROLE": _pattern("auth_support_role", r"[A-Za-z0-9_:./-]{1,100}", "a role name"),
    "AUTH_API_KEY_PEPPER": _pepper,
}

ENV_VARS = tuple(_READERS)
