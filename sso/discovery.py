"""The provider's metadata, read from its discovery document (OpenID Connect Discovery 1.0).

Only OIDC_ISSUER is configured: the endpoints and the signing keys' address come from
`<issuer>/.well-known/openid-configuration`, fetched when someone first signs in (never while
settings load, so a provider that is down cannot stop the staff screens or local logins) and
kept for OIDC_DISCOVERY_TTL_SECONDS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DiscoveryError(Exception):
    """The provider's discovery document could not be read or is not one."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""


_lock = threading.Lock()
_cached: tuple[float, ProviderMetadata] | None = None


def issuer() -> str:
    value: str = settings.OIDC_ISSUER
    if not value:
        raise ImproperlyConfigured("Single sign-on is off: OIDC_ISSUER is not set.")
    return value.rstrip("/")


def metadata() -> ProviderMetadata:
    """The provider's endpoints, from cache or from its discovery document."""
    global _cached
    with _lock:
        now = time.monotonic()
        if _cached is not None and now - _cached[0] < settings.OIDC_DISCOVERY_TTL_SECONDS:
            return _cached[1]
        found = _fetch(issuer())
        _cached = (now, found)
        return found


def forget() -> None:
    """Drop the cached document (tests; a provider that moved)."""
    global _cached
    with _lock:
        _cached = None


def _fetch(expected_issuer: str) -> ProviderMetadata:
    url = f"{expected_issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        doc = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise DiscoveryError(f"cannot read {url}: {exc}") from exc
    if not isinstance(doc, dict):
        raise DiscoveryError(f"{url} is not a JSON object")
    # OpenID Connect Discovery 1.0, section 4.3: the issuer in the document must be the one asked.
    if str(doc.get("issuer", "")).rstrip("/") != expected_issuer:
        raise DiscoveryError(f"{url} names issuer {doc.get('issuer')!r}, not {expected_issuer!r}")
    try:
        return ProviderMetadata(
            issuer=expected_issuer,
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            userinfo_endpoint=str(doc["userinfo_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            end_session_endpoint=str(doc.get("end_session_endpoint") or ""),
        )
    except KeyError as exc:
        raise DiscoveryError(f"{url} lacks {exc.args[0]}") from exc
