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
    """Every setting the service reads: one field per entry of SETTINGS (below),
    plus ``faults``, the test hook COLLECT_JOBS_FAULTS."""

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
        for setting in SETTINGS:
            raw = env.get(setting.name)
            if raw is None or raw == "":
                continue
            values[setting.attribute] = setting.parse(setting.name, raw.strip())
        if env.get(FAULTS_VAR):
            values["faults"] = _faults(FAULTS_VAR, env[FAULTS_VAR].strip())
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


def _number(
    convert: Callable[[str], float], what: str, low: float, high: float, unit: str = "", above_low: bool = False
) -> Callable[[str, str], Any]:
    """A number of ``convert``'s type between ``low`` and ``high`` (more than
    ``low`` when ``above_low``)."""
    units = f" {unit}" if unit else ""
    shown = [f"{b:g}" if isinstance(b, float) else str(b) for b in (low, high)]

    def parse(name: str, raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
        if above_low and not low < value <= high:
            raise ConfigError(f"{name} must be more than {shown[0]} and at most {shown[1]}{units}, got {raw}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {shown[0]} and {shown[1]}{units}, got {raw}")
        return value

    return parse


def _int(low: int, high: int) -> Callable[[str, str], int]:
    return _number(int, "an integer", low, high)


def _seconds(low: float, high: float) -> Callable[[str, str], float]:
    return _number(float, "a number of seconds", low, high, "seconds")


def _days() -> Callable[[str, str], float]:
    return _number(float, "a number of days", 0, 36500, "days", above_low=True)


def _choice(choices: tuple[str, ...], case: Callable[[str], str] = str.upper) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if case(raw) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return case(raw)

    return parse


def _pattern(pattern: str, what: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if not re.fullmatch(pattern, raw):
            raise ConfigError(f"{name} must be {what}, got {raw!r}")
        return raw

    return parse


def _region(name: str, raw: str) -> str:
    if raw.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{name} must be a region code such as US, GB or DE, got {raw!r}")
    return raw.upper()


def _faults(name: str, raw: str) -> frozenset[str]:
    points = frozenset(p.strip() for p in raw.split(",") if p.strip())
    if not all(re.fullmatch(r"[a-z]+\.[a-z_]+", p) for p in points):
        raise ConfigError(f"{name} must list kind.point names, e.g. import.rollback, got {raw!r}")
    return points


def _bool() -> Callable[[str, str], bool]:
    def parse(name: str, raw: str) -> bool:
        if raw.lower() not in ("true", "false"):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return raw.lower() == "true"

    return parse


def _text(max_length: int = 1000) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if len(raw) > max_length:
            raise ConfigError(f"{name} must be at most {max_length} characters")
        return raw

    return parse


def _url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw[:200]!r}")
    return raw


def _public_key(name: str, raw: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pem = raw.replace("\\n", "\n").strip() + "\n"  # an env file may carry the newlines as \\n
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ConfigError(f"{name} must be a PEM public key (-----BEGIN PUBLIC KEY-----...)") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ConfigError(f"{name} must be an RSA or EC public key (RS256/ES256 family)")
    return pem


def _pepper(name: str, raw: str) -> str:
    if len(raw) < 32:
        raise ConfigError(f"{name} must be at least 32 characters (e.g. openssl rand -hex 32)")
    return raw


def _mongo(name: str, raw: str) -> MongoSettings:
    return MongoSettings.from_uri(raw)


# Where the chart stands on a setting (tests/unit/test_deploy_config.py checks it):
VALUE = "value"  # a value of the chart (config.<camelCase>, or auth.<camelCase> for AUTH_*), set by its configmap
TEMPLATE = "template"  # set by the chart's templates themselves (from a Secret, the pod's name, a fixed value)
NEVER = "never"  # never set by the chart (development only)


@dataclass(frozen=True)
class Setting:
    """One environment variable, declared once: its parser (type and bounds),
    how the docs show its default, what it means, and where the chart stands.
    The reader (Settings.from_env), the configuration page of the docs
    (markdown_table, written by scripts/docs) and the chart's checks all come
    from SETTINGS."""

    name: str
    parse: Callable[[str, str], Any]
    default: str
    meaning: str
    chart: str = VALUE
    field: str = ""

    @property
    def attribute(self) -> str:
        return self.field or self.name.lower()

    @property
    def chart_value(self) -> str | None:
        """The chart value that sets it (config.maxRunningJobs, auth.orgClaim)."""
        if self.chart != VALUE:
            return None
        section, words = ("auth", self.name[5:]) if self.name.startswith("AUTH_") else ("config", self.name)
        first, *others = words.lower().split("_")
        return f"{section}.{first}{''.join(w.capitalize() for w in others)}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MONGODB_URI",
        _mongo,
        "`mongodb://127.0.0.1:27017/collect`",
        "the database; its name is the URI's path (default `collect`). Writes use write concern `majority` (the production setting) unless the URI sets `w=`",
        TEMPLATE,
        field="mongo",
    ),
    Setting(
        "HOST",
        _pattern(r"[A-Za-z0-9.:\[\]-]+", "a host name or IP address"),
        "`127.0.0.1` (the image sets `0.0.0.0`)",
        "address to listen on; with `AUTH_DISABLED=true` it must be loopback (`127.0.0.1`, `::1` or `localhost`) or the service refuses to start",
        TEMPLATE,
    ),
    Setting(
        "PORT",
        _int(1, 65535),
        "`8080`",
        "port to listen on",
        TEMPLATE,
    ),
    Setting(
        "LOG_LEVEL",
        _choice(("DEBUG", "INFO", "WARNING", "ERROR")),
        "`INFO`",
        "`DEBUG`, `INFO`, `WARNING`, `ERROR`",
        VALUE,
    ),
    Setting(
        "LOG_FORMAT",
        _choice(("auto", "json", "text"), str.lower),
        "`auto`",
        "`json` (one object per line, with the job's fields), `text`, or `auto`: text on a terminal, JSON otherwise",
        VALUE,
    ),
    Setting(
        "DEFAULT_ORG_ID",
        _pattern(r"[A-Za-z0-9_-]{1,64}", "1-64 letters, digits, '_' or '-'"),
        "`default`",
        "the org every request acts in when `AUTH_DISABLED=true`",
        VALUE,
    ),
    Setting(
        "MAX_UPLOAD_BYTES",
        _int(1024, 1 << 40),
        "`1073741824` (1 GiB)",
        "largest accepted upload",
        VALUE,
    ),
    Setting(
        "MAX_FIELD_SIZE",
        _int(64, 64 * 1024 * 1024),
        "`131072`",
        "largest CSV field, in characters",
        VALUE,
    ),
    Setting(
        "MAX_IMPORTS_PER_ORG",
        _int(1, 1000),
        "`1`",
        "imports of one org holding a slot at once",
        VALUE,
    ),
    Setting(
        "MAX_RUNNING_JOBS",
        _int(1, 1000),
        "`4`",
        "jobs running at once in one process",
        VALUE,
    ),
    Setting(
        "JOB_POLL_SECONDS",
        _seconds(0.05, 60),
        "`1`",
        "the manager's tick: lease renewal, seeing requests made on other replicas, admission",
        VALUE,
    ),
    Setting(
        "JOB_LEASE_SECONDS",
        _seconds(1, 3600),
        "`15`",
        "how long a silent owner keeps a job before another replica adopts it; it must leave two ticks before the safety margin (a third of the lease, at least 1 s) and exceed the slowest single write",
        VALUE,
    ),
    Setting(
        "SHUTDOWN_GRACE_SECONDS",
        _seconds(0, 3600),
        "`20`",
        "on SIGTERM, how long running jobs get to reach a checkpoint before they are cancelled",
        VALUE,
    ),
    Setting(
        "DB_RETRY_SECONDS",
        _seconds(0, 86400),
        "`60`",
        "how long a job keeps retrying while the database is unreachable (with backoff, from its last checkpoint) before it fails with a clear error; the failed job keeps its upload and checkpoint, and `POST /jobs/{id}/retry` continues it",
        VALUE,
    ),
    Setting(
        "DB_TIMEOUT_SECONDS",
        _seconds(1, 3600),
        "`30`",
        "the deadline of every database operation (PyMongo `timeoutMS`), so a half-open connection cannot hang a job or the lease loop; a job's data writes get the shorter of this and its lease's remaining time",
        VALUE,
    ),
    Setting(
        "ROLLBACK_GIVE_UP_SECONDS",
        _seconds(0, 86400 * 7),
        "`600`",
        "a rollback that keeps failing for this long without progress stops holding its org's slot (it stays `terminating` and keeps retrying, with backoff)",
        VALUE,
    ),
    Setting(
        "MAX_QUEUED_PER_ORG",
        _int(1, 1_000_000),
        "`100`",
        'queued jobs one org may have, a reservation taken before the upload is read (see "Limits are reservations"); over it, job creation answers 429 and stores nothing',
        VALUE,
    ),
    Setting(
        "MAX_UPLOAD_BYTES_PER_ORG",
        _int(1024, 1 << 50),
        "`21474836480` (20 GiB)",
        "bytes of uploads one org may hold at once, counted as they arrive (uploads still streaming included; an upload is kept until its job completes or is terminated); the upload that passes it is cut with a 413 at once and nothing of it is kept",
        VALUE,
    ),
    Setting(
        "MAX_UPLOADS_PER_ORG",
        _int(1, 10_000),
        "`4`",
        "uploads one org may be streaming at once, across all replicas; one more is a 429",
        VALUE,
    ),
    Setting(
        "UPLOAD_IDLE_SECONDS",
        _seconds(1, 3600),
        "`60`",
        "an upload whose client sends nothing for this long is answered 408 and nothing of it is kept (its slot and bytes are given back)",
        VALUE,
    ),
    Setting(
        "MAX_STREAMS",
        _int(1, 10_000),
        "`8`",
        "streamed downloads one process serves at once (they take no slot of `MAX_RUNNING_JOBS`); over it, 429 with `Retry-After`",
        VALUE,
    ),
    Setting(
        "MAX_STREAMS_PER_ORG",
        _int(1, 10_000),
        "`2`",
        "streamed downloads one org has open at once, across all replicas (a reservation); over it, 429",
        VALUE,
    ),
    Setting(
        "STREAM_IDLE_SECONDS",
        _seconds(1, 3600),
        "`60`",
        "a streamed download whose client accepts no bytes for this long (it stopped reading) ends `terminated` and frees its slots",
        VALUE,
    ),
    Setting(
        "MAX_EXPORTS_PER_ORG",
        _int(1, 1000),
        "`2`",
        "background exports of one org holding a slot at once (admission takes turns between orgs)",
        VALUE,
    ),
    Setting(
        "MAX_RECORD_BYTES_PER_ORG",
        _int(1024, 1 << 60),
        "`107374182400` (100 GiB)",
        "imported records one org may store, measured as the CSV bytes its imports read; an import that would pass it fails (retryable) before the batch that would is sent; a terminated import gives its share back",
        VALUE,
    ),
    Setting(
        "MAX_RESULT_BYTES_PER_ORG",
        _int(1024, 1 << 60),
        "`21474836480` (20 GiB)",
        "stored export results one org may hold (CSV bytes); an export that would pass it fails (retryable) and keeps nothing; deleting or terminating an export, or retention, gives its share back",
        VALUE,
    ),
    Setting(
        "REPLICA_ID",
        _pattern(r"[A-Za-z0-9_.-]{1,128}", "1-128 letters, digits, '_', '.' or '-'"),
        "host-pid-random",
        "this replica's name as a job owner",
        TEMPLATE,
    ),
    Setting(
        "MAX_EVENT_STREAMS_PER_ORG",
        _int(1, 100_000),
        "`100`",
        "open event streams (`GET /jobs/{id}/events`) one org may hold on one replica; one more is a 429",
        VALUE,
    ),
    Setting(
        "RESULT_RETENTION_DAYS",
        _days(),
        "`7`",
        "export result files are deleted this many days after their job finished (at most `JOB_RETENTION_DAYS`)",
        VALUE,
    ),
    Setting(
        "JOB_RETENTION_DAYS",
        _days(),
        "`30`",
        "finished jobs that may be deleted (see Storage and retention) are deleted this many days after they finished",
        VALUE,
    ),
    Setting(
        "FAILED_JOB_RETENTION_DAYS",
        _days(),
        "`30`",
        "a job failed this many days ago is terminated by the sweep (rolled back: its rows, upload and undo log go); retry it before then",
        VALUE,
    ),
    Setting(
        "JOB_UNDO_DAYS",
        _days(),
        "`7`",
        "a completed import or teams job may be undone (`POST /api/v1/jobs/{id}/undo`) this many days after it completed; then the sweep drops a teams job's undo log and an undo is a `409` naming why",
        VALUE,
    ),
    Setting(
        "AUDIT_RETENTION_DAYS",
        _days(),
        "`400`",
        "audit events are deleted this many days after they were recorded",
        VALUE,
    ),
    Setting(
        "UPLOAD_GRACE_SECONDS",
        _seconds(60, 7 * 86400),
        "`21600` (6 h)",
        "an upload with no job, or whose job finished, and GridFS chunks without a files document are deleted this long after their file started; keep it longer than the slowest upload (the default is 1 GiB at 50 KB/s)",
        VALUE,
    ),
    Setting(
        "DEFAULT_PHONE_REGION",
        _region,
        "`US`",
        "region for team-sheet phone numbers written without `+country` (a request's `region` overrides it)",
        VALUE,
    ),
    Setting(
        "BATCH_MAX_BYTES",
        _int(64 * 1024, 1024 * 1024 * 1024),
        "`2097152` (2 MiB)",
        "an import or teams batch also ends once its rows took this many bytes of the file, and an export batch once its CSV is this long, whichever comes before `batch_size` rows: memory is bounded by bytes, not rows",
        VALUE,
    ),
    Setting(
        "JOB_WORKERS",
        _int(0, 64),
        "1",
        'processes that parse, type and encode one import\'s batches while the event loop only cuts the file and sends them (see "How it works"); `1` builds them in the service process; `0` means the CPUs the process may use (its CPU affinity and cgroup `cpu.max` quota, which a Kubernetes CPU limit sets), at most 4. Workers cost CPU per row and only pay where the database inserts faster than one core parses (see "Workers only where they pay" under Benchmarks). Each worker is a spawned Python process of about 40 MB RSS, started at the first import and kept; it parses with the same `MAX_FIELD_SIZE`, and ends when the service does, even one killed with SIGKILL',
        VALUE,
    ),
    Setting(
        "GUARD_ROWS",
        _int(10, 100_000),
        "`1000`",
        "rows (10–100,000) an import profiles before its first write, to compare with its dataset's history (`guard`), and from which `types=auto` infers column types",
        VALUE,
    ),
    Setting(
        "AUTH_API_KEY_PEPPER",
        _pepper,
        "none: **required** unless `AUTH_DISABLED=true`",
        "the server-side secret (at least 32 characters, e.g. `openssl rand -hex 32`) under which API keys are hashed; the same on every replica; changing it invalidates every key",
        TEMPLATE,
    ),
    Setting(
        "AUTH_JWKS_URL",
        _url,
        "none",
        "the identity provider's JWKS (`https://` only, see `AUTH_JWKS_ALLOW_HTTP_LOOPBACK`); without it and without `AUTH_JWT_PUBLIC_KEY`, only API keys are accepted",
        VALUE,
    ),
    Setting(
        "AUTH_JWKS_ALLOW_HTTP_LOOPBACK",
        _bool(),
        "`false`",
        "development only: `true` lets `AUTH_JWKS_URL` be plain `http://` when its host is `127.0.0.1`, `::1` or `localhost` (a local identity provider); any other http URL is refused at start",
        NEVER,
    ),
    Setting(
        "AUTH_JWKS_MAX_STALE_SECONDS",
        _seconds(1, 30 * 86400),
        "`86400`",
        "how long cached JWKS keys are trusted after the last successful read while the provider is unreachable; past it, JWTs are refused with a 503 (API keys keep working) until a read succeeds. The JWKS is re-read at least every half of this (and at least hourly), and never more than once a minute",
        VALUE,
    ),
    Setting(
        "AUTH_JWT_PUBLIC_KEY",
        _public_key,
        "none",
        "instead of a JWKS, one PEM RSA or EC public key (newlines may be written `\\n`)",
        TEMPLATE,
    ),
    Setting(
        "AUTH_JWT_ISSUER",
        _text(),
        "none: **required** with `AUTH_JWKS_URL` or `AUTH_JWT_PUBLIC_KEY`",
        "the `iss` every JWT must carry",
        VALUE,
    ),
    Setting(
        "AUTH_JWT_AUDIENCE",
        _text(),
        "none: **required** with `AUTH_JWKS_URL` or `AUTH_JWT_PUBLIC_KEY`",
        "the `aud` every JWT must carry: this service's own client id / API identifier at the provider, so tokens issued to other applications are refused",
        VALUE,
    ),
    Setting(
        "AUTH_ORG_CLAIM",
        _pattern(r"[A-Za-z0-9_:./-]{1,100}", "a claim name"),
        "`org_id`",
        "the JWT claim naming the caller's organisation",
        VALUE,
    ),
    Setting(
        "AUTH_ROLES_CLAIM",
        _pattern(r"[A-Za-z0-9_:./-]{1,100}", "a claim name"),
        "`roles`",
        "the JWT claim listing the caller's roles (a list or a space-separated string)",
        VALUE,
    ),
    Setting(
        "AUTH_SUPPORT_ROLE",
        _pattern(r"[A-Za-z0-9_:./-]{1,100}", "a role name"),
        "`collect-jobs:support`",
        "the roles-claim value that may act in any organisation named in `X-Org-Id`. On a shared identity provider, map it only to this application's own role (e.g. a client role of this service's client, emitted only in tokens whose `aud` is this service), never to a generic `support` group other applications use",
        VALUE,
    ),
    Setting(
        "AUTH_DISABLED",
        _bool(),
        "`false`",
        "`true` turns authentication off (development only; logged as a warning at start); refused unless `HOST` is loopback",
        NEVER,
    ),
)

ENV_VARS = tuple(s.name for s in SETTINGS)
# Test builds only, not a setting of the service (docs/development.md): failure
# points to trigger, e.g. COLLECT_JOBS_FAULTS=import.rollback.
FAULTS_VAR = "COLLECT_JOBS_FAULTS"


def markdown_table() -> str:
    """The configuration page's table (docs/reference/configuration.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.default} | {s.meaning} |" for s in SETTINGS]
    return "\n".join(lines) + "\n"
