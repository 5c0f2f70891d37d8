"""GET /metrics: Prometheus's text format, for a token or a trusted network (README "Observability")."""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from observability.metrics import StateCollector


class _ThisProcess(Collector):
    """Without PROMETHEUS_MULTIPROC_DIR (a single process, e.g. runserver): its own metrics."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def registry() -> CollectorRegistry:
    """A registry for one scrape: every process's events (the multiprocess files), and the states."""
    reg = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)
    else:
        reg.register(_ThisProcess())
    reg.register(StateCollector())
    return reg


def allowed(request: HttpRequest) -> bool:
    """The bearer token when METRICS_TOKEN is set, or a client address in METRICS_ALLOWED_NETWORKS
    (default: loopback). Behind a proxy, Daphne's --proxy-headers makes REMOTE_ADDR the client's."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_NETWORKS)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        response = HttpResponse("Forbidden: a METRICS_TOKEN bearer token or a METRICS_ALLOWED_NETWORKS address\n")
        response.status_code = 401 if settings.METRICS_TOKEN else 403
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
