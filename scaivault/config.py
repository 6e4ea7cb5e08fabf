"""Every environment variable ScaiVault reads, parsed once into one frozen Settings object.

Nothing else in the code base reads the environment. A missing or malformed required
variable raises ConfigError naming the variable; the CLI turns it into exit status 2.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


class ConfigError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


_DURATION_RE = re.compile(r"^\s*([0-9]{1,12})\s*([smhdw])\s*$", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_SECONDS = 100 * 365 * 86400   # 36500d: beyond it a date overflows or means "never"


def parse_duration(text: str) -> int:
    """Parse `30s`, `15m`, `48h`, `90d`, `2w` into seconds; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("duration must be a string such as 30s, 15m, 48h or 90d")
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError("not a duration (use forms such as 30s, 15m, 48h, 90d)")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("the duration is longer than 36500d")
    return seconds


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (for logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc[-1]}").geturl()


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed `postgresql://` URL; the password never shows in repr()."""

    user: str
    password: str | None = field(repr=False)
    host: str | None
    port: int
    database: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    unix_sock: str | None = None
    redacted: str = ""

    @classmethod
    def parse(cls, variable: str, url: str) -> "DatabaseURL":
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
        except ValueError:
            # the parser's message may quote part of a password with an unescaped / or #
            raise ConfigError(variable, "is not a valid URL (percent-encode special characters "
                                        "in the user name and password)") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(variable, "must start with postgresql://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        sslmode = query.get("sslmode", "prefer")
        if sslmode not in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
            raise ConfigError(variable, f"unknown sslmode {sslmode!r}")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigError(variable, "names no database (postgresql://user:pass@host:5432/DBNAME)")
        host = parts.hostname
        unix_sock = None
        socket_dir = query.get("host")
        if "port" in query:  # libpq style, mostly with ?host=/socket/dir
            if not (query["port"].isascii() and query["port"].isdigit()):
                raise ConfigError(variable, "has a port parameter that is not a number")
            port = int(query["port"])
        if socket_dir and socket_dir.startswith("/"):
            unix_sock = f"{socket_dir.rstrip('/')}/.s.PGSQL.{port}"
            host = None
        elif not host:
            raise ConfigError(variable, "names no host")
        return cls(
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password is not None else None,
            host=host,
            port=port,
            database=database,
            sslmode=sslmode,
            sslrootcert=query.get("sslrootcert"),
            unix_sock=unix_sock,
            redacted=redact_url(url),
        )


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one ScaiVault process."""

    database_url: DatabaseURL | None
    database_url_read: DatabaseURL | None
    redis_url: str | None
    scaikey_url: str | None
    scaikey_jwks_url: str | None
    scaikey_audience: tuple[str, ...]
    scaikey_client_id: str | None
    scaikey_client_secret_file: str | None
    bind_address: str
    base_url: str | None
    log_level: str
    log_format: str
    kms_provider: str | None
    kms_options: Mapping[str, str] = field(repr=False)       # every KMS_* variable (static credentials too)
    kms_key_id_secondary: str | None
    kms_cache_ttl: int
    storage_provider: str
    storage_options: Mapping[str, str] = field(repr=False)   # every STORAGE_* variable, for the backend plugin
    storage_db_max_bytes: int
    identity_sync_webhook_secret: str | None = field(repr=False)
    identity_sync_interval: int
    rate_limits: Mapping[str, Mapping[str, Any]]
    bootstrap_super_admin: str | None
    migrate_on_start: bool
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_client_ca_file: str | None
    web_concurrency: int
    max_request_bytes: int
    max_secret_bytes: int
    secret_delete_retention: int
    secret_max_versions_default: int
    audit_retention: int
    metrics_token: str | None = field(repr=False)
    db_pool_size: int
    dev_mode: bool = False
    trusted_proxies: tuple = ()             # TRUSTED_PROXIES: ip_network objects whose X-Forwarded-For counts
    metrics_dir: str | None = None          # PROMETHEUS_MULTIPROC_DIR for `serve` (a temp dir when unset)
    kms_cache_grace: int = 3600             # KMS_CACHE_GRACE: cached keys outlive KMS_CACHE_TTL this long while the KMS is unreachable
    worker_warmup_timeout: int = 15         # WORKER_WARMUP_TIMEOUT: a new worker warms up at most this long before accepting
    rotation_scan_interval: int = 60        # ROTATION_SCAN_INTERVAL: seconds between rotation/expiry scans
    webhook_allow_http: bool = False        # WEBHOOK_ALLOW_HTTP: http:// webhook URLs allowed
    webhook_allowed_networks: tuple = ()    # WEBHOOK_ALLOWED_NETWORKS: private CIDRs webhooks may target
    metrics_bind_address: str | None = None  # METRICS_BIND_ADDRESS: a second listener serving /v1/metrics
    acme_ca_bundle: str | None = None       # ACME_CA_BUNDLE: extra CA certificates trusted for ACME directories
    lease_sweep_interval: int = 30          # LEASE_SWEEP_INTERVAL: how often expired leases are revoked
    lease_history_retention: int = 30 * 86400   # LEASE_HISTORY_RETENTION: revoked lease rows kept this long
    dynamic_allowed_hosts: tuple = ()       # DYNAMIC_ALLOWED_HOSTS: host globs / CIDRs engines may reach (empty: any)
    ui_client_id: str | None = None         # UI_CLIENT_ID: the admin UI's ScaiKey application (public client)
    bare_hot_routes: bool = True            # BARE_HOT_ROUTES: GET/PUT /v1/secrets/{path} dispatched without Flask's request context

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- readers

class _Reader:
    """Reads typed values out of an environment mapping, raising ConfigError by name."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def string(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise ConfigError(name, "is required but not set")
            return default
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}")
        return number

    def size(self, name: str, default: int) -> int:
        """Bytes, accepting a plain integer or a suffix k/m/g (powers of 1024)."""
        value = self.raw(name)
        if value is None:
            return default
        m = re.match(r"^(\d+)\s*([kmg]i?b?)?$", value.lower())
        if not m:
            raise ConfigError(name, f"must be a size such as 1048576, 512k or 1m, got {value!r}")
        mult = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}[(m.group(2) or " ")[0].strip() or None]
        return int(m.group(1)) * mult

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {value!r}")

    def duration(self, name: str, default: str) -> int:
        value = self.raw(name) or default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def url(self, name: str, schemes: tuple[str, ...], required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ConfigError(name, "is not a valid URL") from None
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(name, f"must be a {' or '.join(s + '://' for s in schemes)} URL")
        return value

    def redis_url(self, name: str, required: bool) -> str | None:
        """A redis://, rediss:// or unix:// URL with a numeric port and database index, or
        redis+sentinel://[:pass@]host:port[,host:port...]/<service>[/<db>] (Redis Sentinel), or
        redis+cluster://[:pass@]host:port[,host:port...] (Redis Cluster)."""
        value = self.url(name, ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"), required=required)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme in ("redis+sentinel", "redis+cluster"):
            from .redis_store import parse_cluster_url, parse_sentinel_url

            try:
                (parse_sentinel_url if parts.scheme == "redis+sentinel" else parse_cluster_url)(value)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
            return value
        try:
            parts.port
        except ValueError:
            raise ConfigError(name, "has a port that is not a number (percent-encode special "
                                    "characters in the password)") from None
        db = parts.path.strip("/")
        if parts.scheme != "unix" and db and not (db.isascii() and db.isdigit()):
            raise ConfigError(name, "must end in a database number such as /0")
        return value

    def existing_file(self, name: str) -> str | None:
        value = self.string(name)
        if value is not None and not os.path.isfile(value):
            raise ConfigError(name, f"file {value} does not exist or is not a regular file")
        if value is not None and not os.access(value, os.R_OK):
            raise ConfigError(name, f"file {value} is not readable by this user")
        return value

    def prefixed(self, prefix: str) -> Mapping[str, str]:
        return MappingProxyType({k: v for k, v in self.env.items() if k.startswith(prefix) and v.strip()})


def _bind_address(reader: _Reader, name: str = "BIND_ADDRESS", default: str | None = "0.0.0.0:8443") -> str | None:
    value = reader.string(name, default)
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, f"must be HOST:PORT, got {value!r}")
    return value


def _trusted_proxies(reader: _Reader) -> tuple:
    """TRUSTED_PROXIES: comma-separated addresses or CIDRs of the load balancers in front."""
    return _networks(reader, "TRUSTED_PROXIES")


def _networks(reader: _Reader, name: str) -> tuple:
    """A comma-separated list of CIDRs (ip_network objects)."""
    import ipaddress

    networks = []
    for item in (reader.string(name) or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ConfigError(name, f"{item.strip()!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _dynamic_allowed_hosts(reader: _Reader) -> tuple:
    """DYNAMIC_ALLOWED_HOSTS: comma-separated host globs (db-*.internal) or CIDRs (10.0.0.0/8)."""
    import ipaddress

    entries: list = []
    for item in (reader.string("DYNAMIC_ALLOWED_HOSTS") or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if "/" in item:
            try:
                entries.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError("DYNAMIC_ALLOWED_HOSTS", f"{item!r} is not a CIDR") from None
        else:
            entries.append(item)
    return tuple(entries)


def _rate_limits(reader: _Reader) -> Mapping[str, Mapping[str, Any]]:
    """RATE_LIMITS YAML: {category: {rate: int, window: duration}}; categories checked by ratelimit."""
    text = reader.env.get("RATE_LIMITS")
    if not text or not text.strip():
        return MappingProxyType({})
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("RATE_LIMITS", f"is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError("RATE_LIMITS", "must be a YAML mapping of category to {rate, window}")
    from .ratelimit import check_overrides

    try:
        check_overrides(doc)
    except ValueError as exc:
        raise ConfigError("RATE_LIMITS", str(exc)) from None
    limits: dict[str, Mapping[str, Any]] = {}
    for category, spec in doc.items():
        if not isinstance(spec, dict) or set(spec) - {"rate", "window", "burst"} or "rate" not in spec:
            raise ConfigError("RATE_LIMITS", f"category {category!r} must map to {{rate, window}}")
        rate = spec["rate"]
        if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
            raise ConfigError("RATE_LIMITS", f"category {category!r}: rate must be a positive integer")
        try:
            window = parse_duration(str(spec.get("window", "1m")))
        except ValueError as exc:
            raise ConfigError("RATE_LIMITS", f"category {category!r}: window {exc}") from None
        if window < 1:
            raise ConfigError("RATE_LIMITS", f"category {category!r}: window must be at least 1s")
        limits[str(category)] = MappingProxyType({"rate": rate, "window": window})
    return MappingProxyType(limits)


def load_settings(env: Mapping[str, str], *, dev_mode: bool = False, require_services: bool = True) -> Settings:
    """Build Settings from an environment mapping (os.environ in production).

    `require_services=False` (used by `scaivault migrate`) needs only DATABASE_URL.
    `dev_mode=True` (used by `scaivault dev`) relaxes the variables dev mode provides itself.
    """
    r = _Reader(env)
    strict = require_services and not dev_mode

    db_raw = r.string("DATABASE_URL", required=not dev_mode)
    database_url = DatabaseURL.parse("DATABASE_URL", db_raw) if db_raw else None
    read_raw = r.string("DATABASE_URL_READ")
    database_url_read = DatabaseURL.parse("DATABASE_URL_READ", read_raw) if read_raw else None

    audience = tuple(a.strip() for a in (r.string("SCAIKEY_AUDIENCE") or "").split(",") if a.strip())

    settings = Settings(
        database_url=database_url,
        database_url_read=database_url_read,
        redis_url=r.redis_url("REDIS_URL", required=strict),
        scaikey_url=r.url("SCAIKEY_URL", ("http", "https"), required=strict),
        scaikey_jwks_url=r.url("SCAIKEY_JWKS_URL", ("http", "https")),
        scaikey_audience=audience,
        scaikey_client_id=r.string("SCAIKEY_CLIENT_ID"),
        scaikey_client_secret_file=r.string("SCAIKEY_CLIENT_SECRET_FILE"),
        bind_address=_bind_address(r),
        base_url=r.url("BASE_URL", ("http", "https"), required=strict),
        log_level=r.choice("LOG_LEVEL", "info", ("debug", "info", "warn", "warning", "error")),
        log_format=r.choice("LOG_FORMAT", "json", ("json", "text")),
        kms_provider=r.string("KMS_PROVIDER", required=strict),
        kms_options=r.prefixed("KMS_"),
        kms_key_id_secondary=r.string("KMS_KEY_ID_SECONDARY"),
        kms_cache_ttl=r.duration("KMS_CACHE_TTL", "5m"),
        storage_provider=(r.string("STORAGE_PROVIDER", "db") or "db").lower(),
        storage_options=r.prefixed("STORAGE_"),
        storage_db_max_bytes=r.size("STORAGE_DB_MAX_BYTES", 16 * 1024 * 1024),
        identity_sync_webhook_secret=r.string("IDENTITY_SYNC_WEBHOOK_SECRET"),
        identity_sync_interval=r.duration("IDENTITY_SYNC_INTERVAL", "15m"),
        rate_limits=_rate_limits(r),
        bootstrap_super_admin=r.string("BOOTSTRAP_SUPER_ADMIN"),
        migrate_on_start=r.boolean("MIGRATE_ON_START", True),
        tls_cert_file=r.existing_file("TLS_CERT_FILE"),
        tls_key_file=r.existing_file("TLS_KEY_FILE"),
        tls_client_ca_file=r.existing_file("TLS_CLIENT_CA_FILE"),
        web_concurrency=r.integer("WEB_CONCURRENCY", 2, minimum=1),
        max_request_bytes=r.size("MAX_REQUEST_BYTES", 1024 * 1024),
        max_secret_bytes=r.size("MAX_SECRET_BYTES", 512 * 1024),
        secret_delete_retention=r.duration("SECRET_DELETE_RETENTION", "30d"),
        secret_max_versions_default=r.integer("SECRET_MAX_VERSIONS_DEFAULT", 10, minimum=1),
        audit_retention=r.duration("AUDIT_RETENTION", "2555d"),
        metrics_token=r.string("METRICS_TOKEN"),
        db_pool_size=r.integer("DB_POOL_SIZE", 10, minimum=1),
        trusted_proxies=_trusted_proxies(r),
        dev_mode=dev_mode,
        metrics_dir=r.string("PROMETHEUS_MULTIPROC_DIR"),
        kms_cache_grace=r.duration("KMS_CACHE_GRACE", "1h"),
        worker_warmup_timeout=r.duration("WORKER_WARMUP_TIMEOUT", "15s"),
        bare_hot_routes=r.boolean("BARE_HOT_ROUTES", True),
        rotation_scan_interval=r.duration("ROTATION_SCAN_INTERVAL", "60s"),
        webhook_allow_http=r.boolean("WEBHOOK_ALLOW_HTTP", False),
        webhook_allowed_networks=_networks(r, "WEBHOOK_ALLOWED_NETWORKS"),
        metrics_bind_address=_bind_address(r, "METRICS_BIND_ADDRESS", None),
        acme_ca_bundle=r.existing_file("ACME_CA_BUNDLE"),
        lease_sweep_interval=r.duration("LEASE_SWEEP_INTERVAL", "30s"),
        lease_history_retention=r.duration("LEASE_HISTORY_RETENTION", "30d"),
        dynamic_allowed_hosts=_dynamic_allowed_hosts(r),
        ui_client_id=r.string("UI_CLIENT_ID"),
    )
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        missing = "TLS_KEY_FILE" if settings.tls_cert_file else "TLS_CERT_FILE"
        raise ConfigError(missing, "TLS_CERT_FILE and TLS_KEY_FILE must be set together")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ConfigError("TLS_CLIENT_CA_FILE", "needs TLS_CERT_FILE and TLS_KEY_FILE (mTLS requires TLS)")
    if strict and not settings.scaikey_audience:
        # issue 9: without it a token ScaiKey issued to ANY application would be accepted here
        raise ConfigError("SCAIKEY_AUDIENCE", "is required outside `scaivault dev`: the client_id(s) of ScaiVault's "
                          "application in ScaiKey (comma-separated), matched against each token's aud")
    if settings.metrics_bind_address and settings.metrics_bind_address == settings.bind_address:
        raise ConfigError("METRICS_BIND_ADDRESS", "must differ from BIND_ADDRESS (it is a second listener)")
    if settings.bootstrap_super_admin and not (settings.bootstrap_super_admin.startswith("user:")
                                               or settings.bootstrap_super_admin.startswith("usr_")):
        raise ConfigError("BOOTSTRAP_SUPER_ADMIN", "must be user:<email>, a ScaiKey user id (usr_...) or empty")
    return settings
