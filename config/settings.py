"""Countersign settings: one file, read from the environment through strict helpers.

Every variable is listed, with a comment, in `.env.example` and in the README.
Security-relevant values are safe by default; infrastructure falls back to embedded
defaults (SQLite, and a private Redis that `make run` / `make test` start) when unset.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config import fixed_settings as fixed
from config.database import database_settings
from observability.secrets import read_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of an embedded run: SQLite file, demo secret key, beat schedule, logs.
VAR_DIR = Path(os.environ.get("COUNTERSIGN_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """Only True/False (any case) and 1/0 are accepted: a typo must not silently flip a switch."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ImproperlyConfigured(f"{name} must be True or False, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Keys at first run (ops) ---
# The keys of a production run (SECRET_KEY, FIELD_ENCRYPTION_KEYS, AUDIT_SIGNING_KEY) may sit in
# this env file: the first `make run` with a real OPENAI_API_KEY writes random ones there, and
# `manage.py init_secrets` writes one for production (observability/secrets.py). The environment wins.
SECRETS_FILE = Path(env_str("SECRETS_FILE", str(VAR_DIR / "secrets.env")))
if SECRETS_FILE.is_file():
    for _name, _value in read_env_file(SECRETS_FILE).items():
        os.environ.setdefault(_name, _value)
# `manage.py init_secrets` must start without the keys it is about to write. Not configuration
# (hence in neither README nor .env.example): only manage.py sets it, for that one command.
_WRITING_FLAG = "COUNTERSIGN_WRITING_SECRETS"
_WRITING_SECRETS = os.environ.get(_WRITING_FLAG) == "1"
# --- end keys at first run ---

DEBUG = env_bool("DEBUG", False)

# Without an OpenAI key, Countersign runs in demo mode: the local simulator stands in for
# OpenAI, a demo hotel MCP server and demo guests are started, and demo staff accounts exist.
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
DEMO_MODE = not OPENAI_API_KEY
SIMULATOR_HOST = env_str("SIMULATOR_HOST", "127.0.0.1")
SIMULATOR_PORT = env_int("SIMULATOR_PORT", 8765)
SIMULATOR_API_KEY = env_secret("SIMULATOR_API_KEY", "sk-countersign-demo")
HOTEL_MCP_PORT = env_int("HOTEL_MCP_PORT", 8766)
HOTEL_MCP_API_KEY = env_secret("HOTEL_MCP_API_KEY", "hotel-demo-key")
if DEMO_MODE:
    OPENAI_API_KEY = SIMULATOR_API_KEY
    OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", f"http://{SIMULATOR_HOST}:{SIMULATOR_PORT}/v1")
else:
    OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_REALTIME_MODEL = env_str("OPENAI_REALTIME_MODEL", "gpt-realtime")
# The model of a Responses API run (POST /api/runs) that names none.
OPENAI_RESPONSES_MODEL = env_str("OPENAI_RESPONSES_MODEL", "gpt-4.1")
OPENAI_WEBHOOK_SECRET = env_secret("OPENAI_WEBHOOK_SECRET")
# SIP calls that match no route (realtime_bridge.models.SipRoute): transferred to this tel:/sip:
# URI when set, else rejected with this SIP status.
SIP_UNROUTED_REFER_TO = env_str("SIP_UNROUTED_REFER_TO")
SIP_UNROUTED_STATUS = env_int("SIP_UNROUTED_STATUS", 603)
# How long a Celery worker's hold on a Responses run's step lasts unless its heartbeat renews it
# (every third of it): a worker that dies mid-step is replaced by the sweep this long after.
RUN_LEASE_SECONDS = env_int("RUN_LEASE_SECONDS", 30)
# The same for run_bridge's hold on a call's sideband: when a bridge dies, another bridge takes
# its calls over this long after its last renewal.
BRIDGE_LEASE_SECONDS = env_int("BRIDGE_LEASE_SECONDS", 10)


def _local_key(filename: str, make: Callable[[], str]) -> str:
    """Demo/debug: a random key per checkout, kept in var/ so that every process of a run (several
    Daphnes, the worker, beat) uses the same one and it survives a restart. Created atomically:
    processes that start together all read the one that was written first."""
    path = VAR_DIR / filename
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this run made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


_INIT_HINT = "`python manage.py init_secrets` writes the keys to SECRETS_FILE (README, Production)"


def _secret_key() -> str:
    key = env_secret("SECRET_KEY")
    if key:
        return key
    if _WRITING_SECRETS:
        return secrets.token_urlsafe(50)  # this process only writes the file, and signs nothing
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(f"SECRET_KEY is required unless DEBUG or demo mode is on; {_INIT_HINT}")
    try:
        return _local_key("secret_key", lambda: secrets.token_urlsafe(50))
    except OSError:  # no writable var/: sessions then last as long as the process
        return secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()


def _audit_signing_key() -> str:
    """The Ed25519 private key that seals the audit chain: base64 of the 32 raw bytes, or PEM.
    Demo/debug without one: a random key kept in var/, like the demo SECRET_KEY. Production
    without one: empty, and sealing refuses to run (compliance/signing.py) rather than sign
    with a key nobody can check against later."""
    key = env_secret("AUDIT_SIGNING_KEY")
    if key or not (DEBUG or DEMO_MODE):
        return key
    return _local_key("audit_signing_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode())


AUDIT_SIGNING_KEY = _audit_signing_key()
# Public keys of earlier AUDIT_SIGNING_KEYs whose checkpoints stay trusted after a rotation:
# base64 or hex of the 32 raw bytes, or PEM, separated by commas or spaces. Parsed (and checked,
# a system check) by compliance/signing.py; the current key is always trusted.
AUDIT_TRUSTED_PUBLIC_KEYS = env_str("AUDIT_TRUSTED_PUBLIC_KEYS")


def _field_encryption_keys() -> list[str]:
    """Fernet keys that encrypt secrets stored in the database (MCP server credentials), newest
    first: the first encrypts, every one decrypts, so a new key goes in front and the old one
    stays until `manage.py rotate_field_encryption` has re-encrypted the rows (docs/registry.md).
    Demo/debug without one: a random key kept in var/, like the demo SECRET_KEY. Production
    without one: refused at start (ImproperlyConfigured)."""
    keys = [key.strip() for key in env_secret("FIELD_ENCRYPTION_KEYS").split(",") if key.strip()]
    if not keys:
        if _WRITING_SECRETS:
            return [Fernet.generate_key().decode()]
        if not (DEBUG or DEMO_MODE):
            # Refuse to start, like SECRET_KEY: a server that started without it would fail at
            # the first guest's session, when the relay reads the MCP credentials.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS is required unless DEBUG or demo mode is on; {_INIT_HINT}"
            )
        keys = [_local_key("field_encryption_key", lambda: Fernet.generate_key().decode())]
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            # Never the key itself in the message: it ends up in logs.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {number} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return keys


FIELD_ENCRYPTION_KEYS = _field_encryption_keys()
# Days after which the retention purge removes payloads (the hashes stay); 0 keeps them forever.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 0)
# Where export bundles are written; the web processes and the Celery worker must share it.
AUDIT_EXPORT_DIR = Path(env_str("AUDIT_EXPORT_DIR", str(VAR_DIR / "exports")))
# A directory outside the database where every checkpoint is also appended (checkpoints.jsonl),
# to be shipped elsewhere; verify_audit then names a checkpoint the database lost. Empty: off.
AUDIT_CHECKPOINT_PUBLISH_DIR = env_str("AUDIT_CHECKPOINT_PUBLISH_DIR")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
# Browser origins allowed on the relay (/v1/realtime); clients without an Origin always pass.
RELAY_ALLOWED_ORIGINS = env_list("RELAY_ALLOWED_ORIGINS", "")
# The relay's own server (`run_relay`; the `relay` process of `make run`) listens on this port.
RELAY_PORT = env_int("RELAY_PORT", 8001)
# Handshakes one client address may start on /v1/realtime per minute, per relay process (0: no
# limit). Counted in the process before any database or Redis work, so a flood costs little.
RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS = env_int("RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS", 120)
# Live relay sessions one client token may hold at once, across every process (0: no limit).
RELAY_MAX_SESSIONS_PER_TOKEN = env_int("RELAY_MAX_SESSIONS_PER_TOKEN", 20)
# A relay process renews the lease of each session it holds every third of this; a session whose
# lease ran out (its process died) is closed by the beat sweep and its pending requests cancelled.
RELAY_LEASE_SECONDS = env_int("RELAY_LEASE_SECONDS", 15)
GATEWAY_PORT, GATEWAY_TOKEN_TTL_SECONDS = env_int("GATEWAY_PORT", 8002), env_int("GATEWAY_TOKEN_TTL_SECONDS", 7200)
GATEWAY_PUBLIC_URL = env_str("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{GATEWAY_PORT}").rstrip("/")  # docs/gateway.md

# Behind a TLS-terminating proxy (production), turn these on with SECURE_SSL=True.
SECURE_SSL = env_bool("SECURE_SSL", False)
SECURE_SSL_REDIRECT = SECURE_SSL
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SECURE_SSL else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL
SECURE_HSTS_PRELOAD = SECURE_SSL
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE_SSL else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "audit",
    "approvals",
    "realtime_bridge",
    "compliance",
    "notify",
    "sso",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "approval_api",
    "gateway",
    "observability",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The staff screens' language: the one picked in the navigation (a cookie, set_language),
    # else the browser's Accept-Language, else English (LANGUAGE_CODE).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The request id and user of every log line (observability/logs.py); after authentication.
    "observability.middleware.LogContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sso.context.sso",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
# SQLite in the var dir unless DATABASE_URL is set; a connection pool per process on PostgreSQL
# (config/database.py says why).
DATABASES = {
    "default": database_settings(
        DATABASE_URL,
        VAR_DIR,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        pool_max_size=env_int("DB_POOL_MAX_SIZE", 10),
        pool_timeout=env_int("DB_POOL_TIMEOUT", 30),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis carries the channel layer and Celery's broker. `make run`/`make test` export
# REDIS_URL, starting a private embedded Redis when it was unset (config/embedded.py).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Prefixes keep several checkouts or test runs on one shared Redis from hearing each other.
CHANNELS_PREFIX = env_str("CHANNELS_PREFIX", "countersign")
CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: a group send is one PUBLISH, and each process hands it to its own consumers,
        # so a card reaches 100 dashboards with one Redis write instead of 100, and a decision
        # reaches the relay without the core layer's polling. Like every channel layer it is
        # at-most-once; the outbox and the dashboards' snapshots make up for a lost message.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, exactly as long as the
            # layer's blocking BZPOPMIN waits: an idle consumer then dies with "Timeout reading
            # from …". A longer read timeout keeps idle sessions (and dashboards) alive.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": CHANNELS_PREFIX,
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "countersign")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A lost Redis is an outage of live pushes, not of the product: the worker and beat keep
# retrying, forever, and the worker at most BROKER_RECONNECT_MAX_SECONDS apart, so that the
# deadline sweep runs again within seconds of Redis returning (config/broker.py).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
BROKER_RECONNECT_MAX_SECONDS = env_int("BROKER_RECONNECT_MAX_SECONDS", 2)
CELERY_BROKER_TRANSPORT = "config.broker:Transport"
# A running task's work is in the database, which does not need Redis: let it finish rather
# than kill it when the broker connection drops (it is acknowledged late and idempotent).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The countdown of a deadline is seconds long; redeliver an unacknowledged task after a
# minute rather than the default hour (the beat sweep covers the gap in any case).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 60,
    "global_keyprefix": f"{CHANNELS_PREFIX}:",
    # A half-open connection (Redis gone without a FIN) is found within this many seconds.
    "health_check_interval": 10,
    "socket_connect_timeout": 5,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = fixed.CELERY_BEAT_SCHEDULE  # config/fixed_settings.py

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"

# Single sign-on through the hotel group's OpenID Connect provider (sso/; README "Single sign-on").
# Off unless OIDC_ISSUER is set; local accounts keep working beside it.
OIDC_ISSUER = env_str("OIDC_ISSUER").rstrip("/")
OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("OIDC_CLIENT_SECRET")
OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile groups")
OIDC_RP_SIGN_ALGO = env_str("OIDC_SIGN_ALGO", "RS256")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
OIDC_GROUP_MAP = env_list("OIDC_GROUP_MAP", "")
OIDC_SUPERUSER_GROUPS = env_list("OIDC_SUPERUSER_GROUPS", "")
OIDC_LOGIN_LABEL = env_str("OIDC_LOGIN_LABEL", "")
# A CA bundle for a provider whose certificate a private CA signed; else the system's.
OIDC_VERIFY_SSL: str | bool = env_str("OIDC_CA_BUNDLE") or True
OIDC_TIMEOUT = 10
OIDC_DISCOVERY_TTL_SECONDS = 3600
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = False
OIDC_CALLBACK_CLASS = "sso.views.Callback"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "sso.backend.OIDCBackend"]
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en"
# The languages the staff screens are translated into (locale/); any other browser language
# falls back to English.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Every time on the staff screens is shown in this zone, with its abbreviation (approvals_extras
# `when`, static/js/format.js), whatever zone the viewer's device is in.
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# --- Logs and metrics (ops; README "Observability") ---
# text: one readable line per event (the default, `make run`); json: one JSON object per line with
# the request id, session id, user and request of what the line is about (observability/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
# /metrics answers a bearer token, or a client in these networks (CIDRs; empty: token only).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
try:
    METRICS_NETWORKS = [ipaddress.ip_network(cidr, strict=False) for cidr in METRICS_ALLOWED_NETWORKS]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from None
# /healthz says "degraded" (HTTP 200) past these: answers waiting for the relay, and how late
# the oldest pending request is past its deadline (observability/health.py).
HEALTH_OUTBOX_MAX = env_int("HEALTH_OUTBOX_MAX", 50)
HEALTH_DEADLINE_LATE_SECONDS = env_int("HEALTH_DEADLINE_LATE_SECONDS", 10)
# --- end logs and metrics ---
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "observability.logs.json_formatter"},
    },
    # A refused page is an expected answer, not a crash: one line with path and user instead of
    # the traceback Django attaches to "Forbidden (Permission denied)".
    "filters": {"forbidden_one_line": {"()": "config.errors.ForbiddenOneLine"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "django.request": {"filters": ["forbidden_one_line"]},
    },
}

# Approvals: how long a request waits for a human before its deadline decides (a denial).
APPROVAL_TIMEOUT_SECONDS = env_int("APPROVAL_TIMEOUT_SECONDS", 60)
# How often an open staff dashboard checks that its login session still exists, has not expired
# and still belongs to an active staff member; it closes otherwise (approvals/consumers.py).
DASHBOARD_RECHECK_SECONDS = env_int("DASHBOARD_RECHECK_SECONDS", 30)

# A claim ("I'm on it") lapses after this many seconds without a decision (approvals/services/claims.py).
CLAIM_SECONDS = env_int("CLAIM_SECONDS", 120)
# Presence: a dashboard refreshes its row every PRESENCE_HEARTBEAT_SECONDS; a row not refreshed
# for PRESENCE_STALE_SECONDS (its process died without a disconnect) no longer counts as online.
PRESENCE_HEARTBEAT_SECONDS = env_int("PRESENCE_HEARTBEAT_SECONDS", 20)
PRESENCE_STALE_SECONDS = env_int("PRESENCE_STALE_SECONDS", 60)

# Notifications (notify/, README "Notifications"): Web Push, email and Slack for staff who are not
# looking at the queue. Each channel is off until configured.
# The address staff open Countersign at, for the links in emails and Slack messages.
SITE_URL = env_str("SITE_URL", "http://localhost:8000").rstrip("/")
# Web Push: the VAPID key pair (`manage.py vapid_keys` prints one) and who the push services may
# contact about this sender (a mailto: or https: URL).
VAPID_PUBLIC_KEY = env_str("VAPID_PUBLIC_KEY")
VAPID_PRIVATE_KEY = env_secret("VAPID_PRIVATE_KEY")
VAPID_SUBJECT = env_str("VAPID_SUBJECT", "mailto:admin@localhost")
# Email through any SMTP server; unset EMAIL_HOST: no email.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "countersign@localhost")
# Slack (optional): the app's bot token and signing secret; unset SLACK_BOT_TOKEN: no Slack.
SLACK_BOT_TOKEN = env_secret("SLACK_BOT_TOKEN")
SLACK_SIGNING_SECRET = env_secret("SLACK_SIGNING_SECRET")
SLACK_API_URL = env_str("SLACK_API_URL", "https://slack.com/api").rstrip("/")

# Passkeys (the step-up of rules that require one, approvals/services/passkeys.py). Blank RP ID
# and origin: the host and origin of each request (which ALLOWED_HOSTS has checked). Set them
# when the console is reached under several names: a passkey belongs to one RP ID.
WEBAUTHN_RP_ID = env_str("WEBAUTHN_RP_ID", "")
WEBAUTHN_ORIGIN = env_str("WEBAUTHN_ORIGIN", "")
WEBAUTHN_RP_NAME = env_str("WEBAUTHN_RP_NAME", "Countersign")

# The approval API (approval_api/; docs/approval_api.md): REST for other gateways and programs.
REST_FRAMEWORK = fixed.REST_FRAMEWORK  # config/fixed_settings.py
SPECTACULAR_SETTINGS = fixed.SPECTACULAR_SETTINGS
# The longest a long poll (GET /api/v1/requests/{id}/wait) may be asked to wait, in seconds.
APPROVAL_API_MAX_WAIT_SECONDS = env_int("APPROVAL_API_MAX_WAIT_SECONDS", 60)
# Webhook retries: seconds before each retry after a failed try (Standard Webhooks' suggested backoff).
APPROVAL_API_WEBHOOK_RETRY_SECONDS = env_list("APPROVAL_API_WEBHOOK_RETRY_SECONDS", "5,300,1800,7200,18000,36000")
APPROVAL_API_WEBHOOK_TIMEOUT_SECONDS = 10
