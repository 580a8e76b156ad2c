"""The settings model: one section per service, validated at start-up.

Every section forbids unknown keys, so a typo in ``bastion.toml`` is reported
instead of silently ignored.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr
from typing import Any, Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: The secret used when none is configured; production refuses to start with it.
DEVELOPMENT_SECRET = "bastion-development-secret-do-not-use-in-production"

Environment = Literal["development", "staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = ("development", "staging", "production")


class Section(BaseModel):
    """Base for settings sections: strict about unknown keys, immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSection(Section):
    module: str | None = None
    """Import path of the :class:`bastion.App`, ``"package.module:attr"``; used by the CLI."""
    version: str = "0.0.0"
    """Reported by ``/health/ready`` and OpenAPI."""
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """Signs cursors (and later sessions and URLs). At least 32 characters in production."""
    debug: bool = False
    """Expose exception details in error responses. Refused in production."""


class ServerSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    """Number of uvicorn worker processes for ``bastion run``."""
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Requests with a larger body are refused with 413 ``payload_too_large``."""
    graceful_shutdown_s: float = Field(10.0, ge=0)
    """On SIGTERM, in-flight requests get this long to finish before the process exits."""
    gzip_min_bytes: int = Field(1024, ge=0)
    """Responses at least this large are gzip-compressed when the client accepts it."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks (``10.0.0.0/8``) whose X-Forwarded-For is believed. Empty by
    default: not even loopback is trusted until you say so."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)
        return value


class DatabaseSection(Section):
    url: str = "sqlite:///bastion.db"
    """SQLAlchemy URL. Relative SQLite paths resolve against the config file's folder."""
    pool_size: int = Field(5, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    pool_timeout_s: float = Field(10.0, gt=0)
    statement_timeout_ms: int = Field(30_000, ge=0)
    """PostgreSQL ``statement_timeout``; 0 disables it."""
    busy_timeout_ms: int = Field(5_000, ge=0)
    """SQLite: how long a writer waits for the write lock before failing."""
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite WAL durability: NORMAL survives process crashes, FULL also power loss."""
    auto_migrate: bool = False
    """Apply pending migrations at start-up (convenient on one machine)."""
    echo: bool = False
    """Log every SQL statement (development only)."""
    replica_urls: list[str] = Field(default_factory=list)
    """PostgreSQL read replicas. Queries read from one of them (round robin, skipping any
    that cannot be reached); mutations, cached queries and ``primary=True`` queries use
    ``url``. See docs/howto/replicas.md."""

    @model_validator(mode="after")
    def _replicas(self) -> DatabaseSection:
        if not self.replica_urls:
            return self
        if not _is_postgres_url(self.url):
            raise ValueError("replica_urls: read replicas need a PostgreSQL url, not SQLite")
        for index, replica in enumerate(self.replica_urls):
            if not _is_postgres_url(replica):
                # The index, not the URL: it may hold a password.
                raise ValueError(f"replica_urls[{index}]: not a PostgreSQL URL")
        return self


def _is_postgres_url(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme.partition("+")[0] in ("postgres", "postgresql")


class RedisSection(Section):
    url: str | None = None
    """``redis://host:port/db``; when set, ``/health/ready`` checks it."""


class LogSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto`` is readable console output in development and JSON elsewhere."""
    file: str | None = None
    """Write logs to this file instead of standard error."""
    access_log: bool = True
    """One log line per request with route, status and duration."""


class ErrorsSection(Section):
    log_codes: list[str] = Field(default_factory=list)
    """4xx codes that are also written to the error log (5xx always are)."""
    expose_internals: bool | None = None
    """Show the exception type and message in 5xx responses; on in development only by default."""
    log_retention_s: int = Field(30 * 86_400, ge=3_600)
    """Error-log rows older than this are deleted by housekeeping (their groups with them)."""


class I18nSection(Section):
    default_locale: str = "en"
    locales: list[str] = Field(default_factory=lambda: ["en", "es", "tr"])


class HealthSection(Section):
    timeout_s: float = Field(2.0, gt=0, le=60)
    """Default time limit for one readiness check."""


def _default_roles() -> dict[str, list[str]]:
    return {
        "admin": ["read:all", "write:all", "delete:all"],
        "user": ["read:public", "write:own"],
    }


class AuthSection(Section):
    roles: dict[str, list[str]] = Field(default_factory=_default_roles)
    """Role name to the permissions it grants (``action:scope``); ``[auth.roles]`` in the file."""
    password_min_length: int = Field(10, ge=8, le=128)
    password_max_length: int = Field(128, ge=16, le=4096)
    """Argon2 hashes any length, but an upper bound keeps one login from costing seconds."""
    argon2_time_cost: int = Field(3, ge=1, le=20)
    argon2_memory_kib: int = Field(65_536, ge=8_192, le=4_194_304)
    """64 MiB: RFC 9106's second recommended option, argon2-cffi's default."""
    argon2_parallelism: int = Field(4, ge=1, le=64)
    login_limit: str = "5/hour"
    """Failed logins allowed per email and client address before 429 ``rate_limited``."""

    session_backend: Literal["database", "memory", "redis"] = "database"
    """Where browser sessions live; ``redis`` uses ``[redis] url``, ``memory`` one process only."""
    session_cookie_name: str = Field("bastion_session", pattern=r"^[A-Za-z0-9_\-]+$")
    session_cookie_secure: bool | None = None
    """Send the cookie over HTTPS only; defaults to on everywhere but development."""
    session_cookie_samesite: Literal["lax", "strict"] = "lax"
    session_cookie_domain: str | None = None
    session_idle_timeout_s: int = Field(12 * 3600, ge=60)
    session_absolute_timeout_s: int = Field(14 * 86400, ge=60)
    session_defaults: dict[str, Any] = Field(
        default_factory=lambda: {"preferences": {"theme": "auto", "notifications": True}}
    )
    """Data every new session starts with (``session.data``)."""
    csrf_header: str = "X-CSRF-Token"

    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    """Pinned: tokens signed with any other algorithm (``none`` included) are refused."""
    jwt_secret: SecretStr | None = None
    """Signs access tokens; defaults to ``app.secret_key``."""
    jwt_issuer: str = "bastion"
    jwt_audience: str = "bastion-api"
    access_token_ttl_s: int = Field(900, ge=30, le=900)
    """Access tokens live at most 15 minutes; refresh tokens renew them."""
    refresh_token_ttl_s: int = Field(30 * 86400, ge=300)
    api_key_prefix: str = Field("bk", pattern=r"^[a-z]{1,8}$")
    """Keys look like ``bk_<id>_<secret>``; the prefix helps secret scanners find leaks."""


def _is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OidcProviderSettings(Section):
    """One OpenID Connect provider (``[oidc.providers.<name>]``) bastion signs users in with."""

    issuer: str
    """The issuer URL exactly as the provider's discovery document states it; bastion
    reads ``<issuer>/.well-known/openid-configuration``. https, or http for a provider on
    loopback (production refuses plain http to any other host)."""
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    """``openid`` is required; ``email`` is what lets an account be linked or created."""
    display_name: str | None = None
    """The name shown on the sign-in button; defaults to the provider's key."""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s):// URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid'")
        return value

    @property
    def plain_http_remote(self) -> bool:
        """The issuer is reached over plain http on a host other than loopback."""
        parts = urlsplit(self.issuer)
        return parts.scheme == "http" and not _is_loopback_host(parts.hostname)


_PROVIDER_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class OidcSection(Section):
    providers: dict[str, OidcProviderSettings] = Field(default_factory=dict)
    """Provider key (used in ``/auth/oidc/<key>/...`` URLs) to its settings."""
    redirect_base_url: str | None = None
    """Public base URL the callback URLs are built on (``https://shop.example``); when unset,
    the request's own base URL is used, which is only right without a rewriting proxy."""

    @field_validator("providers")
    @classmethod
    def _keys(cls, value: dict[str, OidcProviderSettings]) -> dict[str, OidcProviderSettings]:
        for key in value:
            if not _PROVIDER_KEY.fullmatch(key):
                raise ValueError(f"provider key {key!r}: use a-z, 0-9, - and _")
        return value

    @field_validator("redirect_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")


class RateLimitSection(Section):
    enabled: bool = True
    """``BASTION_RATELIMIT_ENABLED=false`` switches every limit off (load tests)."""
    storage_url: str = "memory://"
    """``memory://`` counts per process; ``redis://host:port/db`` shares them between processes."""
    strategy: Literal["fixed-window", "moving-window", "sliding-window"] = "sliding-window"
    default_limits: list[str] = Field(default_factory=lambda: ["600/minute"])
    """Anonymous requests, per client address, e.g. ``["20/second", "600/minute"]``."""
    user_limits: list[str] = Field(default_factory=lambda: ["1200/minute"])
    """Requests with a session or bearer token, per user, whatever address they come from."""
    api_key_limits: list[str] = Field(default_factory=lambda: ["600/minute"])
    """Requests with an API key, per key."""
    global_limits: list[str] = Field(default_factory=list)
    """Every counted request together: a ceiling for the whole app (empty: none)."""
    fail_open: bool = True
    """When the storage is unreachable: let requests through (true) or answer 503 (false)."""
    exempt_paths: list[str] = Field(default_factory=lambda: ["/health/", "/docs"])
    """Path prefixes never counted (probes, documentation)."""

    @field_validator("default_limits", "user_limits", "api_key_limits", "global_limits")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        from limits import parse_many

        for entry in value:
            parse_many(entry)
        return value


class IdempotencySection(Section):
    enabled: bool = True
    """Store and replay responses to unsafe requests that carry an ``Idempotency-Key``."""
    ttl_s: int = Field(86_400, ge=3_600)
    """How long a key is remembered; at least an hour, so it always outlives the lease."""
    lock_s: int = Field(60, ge=1, le=3_600)
    """Lease of a request in progress: after it, a crashed request's key can be taken over."""


class JobsSection(Section):
    """Background jobs and their workers (``bastion worker``, ``--embedded-worker``)."""

    concurrency: int = Field(16, ge=1, le=1000)
    """Jobs one worker process runs at once."""
    batch_size: int = Field(32, ge=1, le=1000)
    """Jobs claimed per round trip to the database."""
    lease_s: float = Field(30.0, ge=0.5, le=3600)
    """A claimed job is the worker's for this long; heartbeats extend it. A dead worker's
    jobs are claimed again after it (so it bounds the delay after a crash)."""
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    """How often an idle worker looks for due jobs when no wake-up arrives (delayed jobs,
    other processes on SQLite)."""
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    """On SIGTERM, how long running jobs may finish before they are given back."""
    embedded_worker: bool | None = None
    """Run a worker inside ``bastion run``; unset: on in development, off otherwise."""
    retention_s: int = Field(7 * 86_400, ge=3_600)
    """Finished jobs are purged after this long."""
    cron_grace_s: float = Field(60.0, ge=1, le=86_400)
    """A cron tick younger than this still fires on time; older ones were missed, and
    the schedule's ``catch_up`` decides."""


class CacheSection(Section):
    """The query cache (``@app.query(..., cache="5m")``)."""

    enabled: bool = True
    """Off: every cached query runs every time (for debugging)."""
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    """Results kept per process (``memory`` backend); the least recently used go first."""
    backend: Literal["memory", "redis"] = "memory"
    """``memory``: one cache per process, invalidated by its own commits; ``redis``
    (``[redis] url``): one cache shared by every process, invalidated by all their commits."""
    prefix: str = Field("bastion:cache:", max_length=100)
    """Start of every Redis key, followed by the app's name, so apps sharing a Redis never meet."""
    redis_timeout_s: float = Field(0.25, gt=0, le=10)
    """Time limit for connecting to Redis and for one command; a cache read that runs
    out answers uncached instead of failing the request."""
    redis_retry_s: float = Field(1.0, gt=0, le=300)
    """After a Redis failure, how long this process runs cached queries uncached before
    trying Redis again."""


class PubSubSection(Section):
    """Messages between an app's processes: commits' write sets (cache invalidation,
    realtime re-runs), realtime events, sign-outs."""

    backend: Literal["auto", "memory", "redis", "postgres"] = "auto"
    """``auto``: Redis when ``[redis] url`` is set, else PostgreSQL LISTEN/NOTIFY when the
    database is PostgreSQL, else ``memory`` (this process only: one server on SQLite)."""
    channel: str = Field("", max_length=63)
    """The Redis channel or PostgreSQL NOTIFY channel; empty: ``bastion_<app name>``."""
    reconnect_max_s: float = Field(5.0, gt=0, le=300)
    """Longest wait between attempts to reconnect a lost subscription."""


class RealtimeSection(Section):
    """Realtime connections: ``/realtime`` (WebSocket) and ``/events`` (SSE)."""

    heartbeat_s: float = Field(25.0, gt=0, le=3600)
    """Pings are sent this often (proxies close quiet connections); credentials are
    re-checked as often."""
    auth_timeout_s: float = Field(5.0, gt=0, le=60)
    """A WebSocket without credentials must send ``{"type": "auth"}`` within this."""
    send_queue: int = Field(256, ge=1, le=100_000)
    """Messages waiting for one slow client; when full the client is disconnected."""
    max_subscriptions: int = Field(64, ge=1, le=10_000)
    """Subscriptions one connection may hold."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Origins whose pages may open a cookie-authenticated WebSocket, besides the
    server's own host and ``[cors] allow_origins`` (cross-site WebSocket hijacking)."""
    compression: bool = False
    """Offer per-message deflate to WebSocket clients (``bastion run``): fewer bytes on
    the wire for large messages, more memory and CPU per connection."""


class IntegrationsSection(Section):
    """Outbound HTTP (``runtime.http``): timeouts, retries and circuit breakers."""

    connect_timeout_s: float = Field(3.0, gt=0, le=60)
    """Time limit for opening a connection to a peer."""
    timeout_s: float = Field(10.0, gt=0, le=300)
    """Time limit for one attempt, from sending the request to the last byte of the response."""
    max_attempts: int = Field(3, ge=1, le=10)
    """Attempts per call, the first included (1: never retry)."""
    backoff_base_s: float = Field(0.2, ge=0, le=60)
    """Backoff before retry ``n`` is random between 0 and ``base * 2**(n-1)`` (full jitter)."""
    backoff_max_s: float = Field(5.0, ge=0, le=300)
    """Upper bound of one backoff; a ``Retry-After`` longer than this ends the retries."""
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)
    """Retries per dependency may add at most this share of calls (a token bucket per process)."""
    retry_budget_burst: int = Field(10, ge=0, le=1000)
    """Retries available before any call has earned some: the bucket's size."""
    breaker_failure_threshold: int = Field(5, ge=1, le=1000)
    """Consecutive failures of a dependency that open its circuit breaker."""
    breaker_reset_timeout_s: float = Field(30.0, gt=0, le=3600)
    """How long an open breaker refuses calls before it lets one trial call through."""
    breaker_storage: Literal["memory", "redis"] = "memory"
    """``memory``: one breaker per process; ``redis`` (``[redis] url``): shared by all processes."""


class MailSection(Section):
    """Transactional email (``bastion.mail``): which backend sends it, and how SMTP is reached."""

    backend: Literal["smtp", "console", "file", "memory"] = "console"
    """``smtp`` sends; ``console`` logs each message, ``file`` writes ``.eml`` files into
    ``outbox_dir``, ``memory`` keeps them in a list (tests)."""
    from_address: str = "bastion@localhost"
    """The default sender, ``shop@example.com`` or ``Shop <shop@example.com>``."""
    smtp_host: str = Field("127.0.0.1", min_length=1)
    smtp_port: int = Field(25, ge=1, le=65535)
    """Usually 25 (relay), 587 (``starttls``) or 465 (``tls``)."""
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    """Set together with ``smtp_username``, or neither."""
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    """``starttls`` upgrades a plain connection and fails if the server cannot; ``tls``
    connects over TLS from the first byte. Production refuses ``none`` to a host off loopback."""
    timeout_s: float = Field(10.0, gt=0, le=300)
    """Time limit for each step of an SMTP conversation (connect, each command)."""
    outbox_dir: str = "var/mail"
    """Where the ``file`` backend writes, relative to the current directory unless absolute."""
    templates_dir: str | None = None
    """The mail template folder, used when the app passes none to ``Mailer.from_settings``."""

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        _name, address = parseaddr(value)
        local, at, domain = address.rpartition("@")
        if not (at and local and domain) or any(c in value for c in "\r\n"):
            raise ValueError("must be an address, 'user@host' or 'Name <user@host>'")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MailSection:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("smtp_username and smtp_password go together: set both or neither")
        return self

    @property
    def plain_smtp_remote(self) -> bool:
        """Mail goes over SMTP without TLS to a host other than loopback."""
        return (
            self.backend == "smtp"
            and self.smtp_tls == "none"
            and not _is_loopback_host(self.smtp_host)
        )


class WebhooksSection(Section):
    """Webhooks (``bastion.webhooks``): checking inbound signatures, delivering outbound events."""

    timeout_s: float = Field(10.0, gt=0, le=120)
    """Time limit for one delivery attempt, from connecting to the response's status line;
    running out is a failed attempt."""
    max_attempts: int = Field(8, ge=1, le=25)
    """Delivery attempts per event and subscription, the first included; then the delivery
    is dead (kept in the log, redeliverable)."""
    tolerance_s: int = Field(300, ge=1, le=3600)
    """Inbound signatures whose timestamp is further than this from now, past or future,
    are refused (replay protection); a receiver may set its own."""
    user_agent: str = Field("bastion-webhooks/1", max_length=200, pattern=r"^[\x20-\x7e]+$")
    """The ``User-Agent`` of deliveries, so receivers can tell them apart in their logs."""


class FilesSection(Section):
    """Uploaded files (``bastion.files``): where they are kept, how large, which types."""

    backend: Literal["local", "s3"] = "local"
    """``local`` keeps blobs under ``root``; ``s3`` in an S3-compatible bucket (needs the
    ``bastion[s3]`` extra)."""
    root: str = "var/files"
    """The local storage folder, relative to the current directory unless absolute."""
    s3_bucket: str = ""
    """The bucket of the ``s3`` backend (it must exist)."""
    s3_endpoint_url: str | None = None
    """Another S3-compatible service (MinIO, Ceph...); ``None`` is AWS."""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    """With ``s3_secret_access_key``; both unset use boto3's own chain (environment,
    ``~/.aws``, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = Field("", max_length=200, pattern=r"^([A-Za-z0-9._-]+/)*$")
    """Keys start with it, e.g. ``"uploads/"``: one bucket can serve several apps."""
    max_bytes: int = Field(10 * 1024 * 1024, ge=1)
    """Uploads larger than this are refused with 413 ``payload_too_large`` while they stream
    in. The whole request is also bounded by ``server.max_body_bytes``."""
    url_ttl_s: int = Field(300, ge=1, le=7 * 24 * 3600)
    """How long a signed download URL stays valid unless ``url(ttl_s=...)`` says otherwise."""
    allowed_types: list[str] = Field(
        default_factory=lambda: ["image/jpeg", "image/png", "image/webp", "image/gif"]
    )
    """Content types accepted, as sniffed from the bytes (an upload call may pass its own);
    the sniffer knows JPEG, PNG, GIF, WebP and PDF."""

    @model_validator(mode="after")
    def _s3(self) -> FilesSection:
        if self.backend == "s3" and not self.s3_bucket:
            raise ValueError("s3_bucket: the s3 backend needs a bucket")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "s3_access_key_id and s3_secret_access_key go together: set both or neither"
            )
        return self


class SecuritySection(Section):
    hsts: bool | None = None
    """Send Strict-Transport-Security; defaults to on in production only."""
    hsts_max_age_s: int = Field(31_536_000, ge=0)
    content_security_policy: str = (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    """The API's policy: its responses are JSON, so nothing may load or frame them."""
    docs_content_security_policy: str = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    )
    """The policy of ``/docs`` (Swagger UI needs its inline start-up script)."""
    referrer_policy: str = "no-referrer"


class CorsSection(Section):
    allow_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser; empty switches CORS off."""
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: [
            "Authorization",
            "Content-Type",
            "Accept",
            "Accept-Language",
            "X-Request-ID",
            "X-CSRF-Token",
            "X-API-Key",
            "Idempotency-Key",
            "If-None-Match",
        ]
    )
    expose_headers: list[str] = Field(
        default_factory=lambda: [
            "X-Request-ID",
            "ETag",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "Idempotent-Replayed",
        ]
    )
    allow_credentials: bool = True
    """Let browsers send cookies; never combined with a wildcard origin."""
    max_age_s: int = Field(600, ge=0)


class MetricsSection(Section):
    """Prometheus metrics at ``/metrics`` and the per-minute request statistics (#6)."""

    enabled: bool = True
    """Serve the Prometheus exposition at ``path``. The per-minute request statistics in the
    database (console charts, alert rules) are kept either way."""
    path: str = "/metrics"
    """Where the exposition is served; outside the OpenAPI schema and the rate limits."""
    token: SecretStr | None = None
    """When set, scrapes must send ``Authorization: Bearer <token>`` (else 401)."""
    allow_ips: list[str] = Field(default_factory=list)
    """When set, only these addresses or networks (``10.0.0.0/8``) may scrape (else 403).
    Production should set this or ``token``: the exposition names routes and queues."""
    multiprocess_dir: str | None = None
    """Folder shared by the server's worker processes for prometheus-client's multiprocess
    mode (``PROMETHEUS_MULTIPROC_DIR`` wins when set). ``bastion run --workers N`` with N > 1
    uses a fresh temporary folder when neither is set."""
    stats_flush_s: float = Field(10.0, gt=0, le=300)
    """How often each server process writes its request statistics to the database."""
    stats_retention_s: float = Field(7 * 86_400, gt=0)
    """Request statistics older than this are deleted by housekeeping."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError("must be an absolute path like /metrics")
        return value.rstrip("/")

    @field_validator("allow_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)
        return value


class TracingSection(Section):
    """OpenTelemetry traces (#6)."""

    enabled: bool = True
    """Trace requests, functions, SQL, outbound HTTP, jobs and workflow steps. Off: no spans,
    no ``traceparent`` on outbound calls, no trace id in logs."""
    exporter: Literal["none", "console", "otlp", "memory"] = "none"
    """Where finished spans go: ``none`` (trace ids still correlate logs, error rows and
    jobs; nothing is exported), ``console`` (standard output), ``otlp`` (OTLP/HTTP to
    ``otlp_endpoint``; needs the ``otlp`` extra) or ``memory`` (kept in
    ``runtime.tracing.exporter``, for tests)."""
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The collector's OTLP/HTTP traces URL (Jaeger, Tempo, the OpenTelemetry Collector)."""
    otlp_headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Headers sent with every export, e.g. a vendor's API key (masked by ``config show``)."""
    otlp_timeout_s: float = Field(10.0, gt=0, le=120)
    """Time limit for one export batch; spans of a batch that fails are dropped, never retried
    on the request path."""
    sample_ratio: float = Field(1.0, ge=0, le=1)
    """Share of new traces recorded (by trace id). A request carrying a ``traceparent`` follows
    its caller's decision instead."""
    service_name: str | None = None
    """``service.name`` of every span; the app's name when unset."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value


AlertKind = Literal["error_rate", "p95_latency", "dead_jobs", "circuit_open", "health"]
AlertChannel = Literal["log", "webhook", "email"]


class AlertRule(Section):
    """One ``[[alerts.rules]]`` entry: it fires while its measurement is above ``threshold``."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    """Names the rule in notifications, its state and its history; unique."""
    kind: AlertKind
    """What is measured: ``error_rate`` (share of requests answered 5xx, 0 to 1),
    ``p95_latency`` (milliseconds), ``dead_jobs`` (jobs now dead), ``circuit_open``
    (outbound breakers open) or ``health`` (critical readiness checks failing)."""
    threshold: float = Field(ge=0)
    """The rule fires while the measurement is strictly above this."""
    window_s: int = Field(300, ge=60, le=86_400)
    """How far back ``error_rate`` and ``p95_latency`` look."""
    route: str | None = Field(None, max_length=512)
    """Only this route template (``/api/v1/orders``); every route when unset."""
    min_requests: int = Field(20, ge=1)
    """``error_rate`` and ``p95_latency`` stay quiet below this many requests in the
    window: one failure out of two requests is no outage."""
    channels: list[AlertChannel] | None = None
    """Where this rule notifies (``webhook``, ``email``); every configured channel when
    unset. The log line is always written."""

    @model_validator(mode="after")
    def _meaningful(self) -> AlertRule:
        if self.kind == "error_rate" and self.threshold > 1:
            raise ValueError(f"rule {self.name}: an error_rate threshold is a share, 0 to 1")
        if self.route is not None and self.kind not in ("error_rate", "p95_latency"):
            raise ValueError(f"rule {self.name}: route applies to error_rate and p95_latency")
        return self


class AlertsSection(Section):
    """Alert rules, their schedule and where notifications go (#6)."""

    enabled: bool = True
    """Off: the alerts job (``app.use_alerts()``) evaluates nothing."""
    schedule: str = "* * * * *"
    """When rules are evaluated (five cron fields, UTC), unless ``app.use_alerts`` was
    given its own schedule."""
    cooldown_s: int = Field(3600, ge=0)
    """A rule still firing is notified again only after this long."""
    webhook_urls: list[str] = Field(default_factory=list)
    """Slack-compatible incoming webhooks: each gets ``{"text": ..., "blocks": [...]}``
    through ``runtime.http``. Keep them secret (they are credentials)."""
    email_to: list[str] = Field(default_factory=list)
    """Addresses notified through ``runtime.mail``."""
    rules: list[AlertRule] = Field(default_factory=list)
    """The ``[[alerts.rules]]``; see :class:`AlertRule`."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a five-field cron expression")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("each must be an http or https URL")
        return value

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            _name, address = parseaddr(entry)
            local, at, domain = address.rpartition("@")
            if not (at and local and domain) or any(c in entry for c in "\r\n"):
                raise ValueError(f"{entry!r} is not an email address")
        return value

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[AlertRule]) -> list[AlertRule]:
        names = [rule.name for rule in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)} repeated")
        return value


class ClientLogsSection(Section):
    """``POST /client-logs``: logs and errors sent by browsers and mobile apps (#6)."""

    allow_anonymous: bool = True
    """Accept batches from visitors who are not signed in (a crash before login matters
    too); off: they get 401 ``not_authenticated``."""
    rate_limit: str = "60/minute"
    """Batches per signed-in user (``limits`` syntax, several joined by ``;``)."""
    anonymous_rate_limit: str = "10/minute"
    """Batches per client address from anonymous callers: stricter, as anyone can post."""
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """A larger batch is refused with 413 ``payload_too_large`` while it streams in."""
    max_entries: int = Field(50, ge=1, le=1000)
    """Entries per batch; more is 422 ``validation_failed`` on ``entries``."""
    max_message_chars: int = Field(4000, ge=100, le=100_000)
    """Longer messages are cut to this length (not refused: the start is what matters)."""
    max_stack_chars: int = Field(16_000, ge=100, le=1_000_000)
    """Longer stack traces are cut to this length."""
    retention_s: int = Field(7 * 86_400, ge=3_600)
    """Entries older than this are deleted by the retention job (``app.use_client_logs``)."""

    @field_validator("rate_limit", "anonymous_rate_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)
        return value


class ConsoleSection(Section):
    """The admin console at ``/console`` (#6)."""

    enabled: bool = True
    """Serve the console (only apps that call ``use_auth`` have one: it signs in with it)."""
    path: str = Field("/console", pattern=r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$")
    """Where the console is served; the API prefix and ``/health`` are taken."""


class Settings(BaseModel):
    """All of bastion's settings, as loaded from ``bastion.toml`` and the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Environment = "development"
    app: AppSection = AppSection()
    server: ServerSection = ServerSection()
    database: DatabaseSection = DatabaseSection()
    redis: RedisSection = RedisSection()
    log: LogSection = LogSection()
    errors: ErrorsSection = ErrorsSection()
    i18n: I18nSection = I18nSection()
    health: HealthSection = HealthSection()
    auth: AuthSection = AuthSection()
    oidc: OidcSection = OidcSection()
    ratelimit: RateLimitSection = RateLimitSection()
    idempotency: IdempotencySection = IdempotencySection()
    integrations: IntegrationsSection = IntegrationsSection()
    jobs: JobsSection = JobsSection()
    cache: CacheSection = CacheSection()
    pubsub: PubSubSection = PubSubSection()
    realtime: RealtimeSection = RealtimeSection()
    mail: MailSection = MailSection()
    webhooks: WebhooksSection = WebhooksSection()
    files: FilesSection = FilesSection()
    security: SecuritySection = SecuritySection()
    cors: CorsSection = CorsSection()
    metrics: MetricsSection = MetricsSection()
    tracing: TracingSection = TracingSection()
    alerts: AlertsSection = AlertsSection()
    client_logs: ClientLogsSection = ClientLogsSection()
    console: ConsoleSection = ConsoleSection()
    extensions: dict[str, Any] = Field(default_factory=dict)
    """App-declared sections (``App(config_sections={...})``), validated by their own models."""

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def expose_internals(self) -> bool:
        if self.errors.expose_internals is not None:
            return self.errors.expose_internals
        return self.is_development or self.app.debug

    def section(self, name: str) -> Any:
        """Return an app-declared settings section by name."""
        return self.extensions[name]


#: Built-in section names mapped to their models, in declaration order.
BUILTIN_SECTIONS: dict[str, type[Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}
