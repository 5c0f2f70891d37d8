"""The installable app (manifest, service worker), a person's notification settings,
their browsers' push subscriptions, and Slack's interactivity endpoint.

Decisions from a notification's buttons go to the dashboard's own endpoint (approvals decide),
with the same login, CSRF token and checks; those from Slack go through the same service.
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.staticfiles import finders
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals.views import staff_required
from notify import push, services, slack, tasks
from notify.models import PushSubscription, SlackLink

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SLACK_LINK_SALT = "notify.slack.link"
SLACK_LINK_MAX_AGE = 3600


def _staff(request: HttpRequest) -> User:
    """The logged-in staff member of a view behind staff_required."""
    user = request.user
    if not user.is_authenticated:  # staff_required let nobody else through
        raise PermissionDenied
    return user


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
def manifest(request: HttpRequest) -> JsonResponse:
    icons = [
        {"src": static(f"icons/icon-{size}.png"), "sizes": f"{size}x{size}", "type": "image/png", "purpose": "any"}
        for size in (192, 512)
    ]
    icons.append(
        {"src": static("icons/maskable-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "maskable"}
    )
    data = {
        "name": "Countersign",
        "short_name": "Countersign",
        "description": "Approve or deny what a guest's assistant asks to do.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f4e79",
        "icons": icons,
    }
    return JsonResponse(data, content_type="application/manifest+json")


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    # Served from the root, not /static/, so that its scope covers the whole app (the card URLs).
    path = finders.find("js/sw.js")
    if not isinstance(path, str):
        raise Http404("service worker missing")
    with open(path, encoding="utf-8") as f:
        response = HttpResponse(f.read(), content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = "/"
    # A new deploy's worker must be picked up at once, not after a cache's lifetime.
    response["Cache-Control"] = "no-cache"
    return response


@never_cache
@require_GET
def csrf(request: HttpRequest) -> JsonResponse:
    """For the service worker, which has no page to read a token from: the CSRF token (and its
    cookie) and whether the browser's login is live."""
    user = request.user
    return JsonResponse(
        {
            "csrf_token": get_token(request),
            "authenticated": bool(user.is_authenticated),
            "staff": bool(user.is_authenticated and user.is_active and user.is_staff),
        }
    )


def _valid_endpoint(endpoint: str) -> bool:
    # Browsers' push services are HTTPS; plain HTTP only to this machine (a local push service).
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    try:
        return parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@require_http_methods(["POST", "DELETE"])
def subscriptions(request: HttpRequest) -> JsonResponse:
    """POST: this browser's PushSubscription.toJSON() (JSON body); DELETE: {"endpoint"}.
    Answers 201 {"id"} / 200 {"deleted"}; 400 for a malformed body, 403 unless logged-in staff."""
    if not request.user.is_authenticated:
        return _error("Your session has ended. Log in again.", 403)
    if not request.user.is_staff:
        return _error("Only staff receive notifications.", 403)
    try:
        body: Any = json.loads(request.body or b"{}")
        endpoint = str(body["endpoint"])
    except (ValueError, KeyError, TypeError):
        return _error("Send the subscription as JSON with its endpoint.", 400)
    if request.method == "DELETE":
        return JsonResponse({"deleted": services.unsubscribe(request.user, endpoint=endpoint)})
    keys = body.get("keys") if isinstance(body.get("keys"), dict) else {}
    p256dh, auth = str(keys.get("p256dh", "")), str(keys.get("auth", ""))
    if not (_valid_endpoint(endpoint) and p256dh and auth and len(endpoint) <= 1000):
        return _error("The subscription needs an HTTPS endpoint and its p256dh and auth keys.", 400)
    sub = services.subscribe(
        request.user,
        endpoint=endpoint,
        p256dh=p256dh[:200],
        auth=auth[:100],
        user_agent=request.headers.get("User-Agent", ""),
    )
    return JsonResponse({"id": sub.pk}, status=201)


@require_http_methods(["GET", "POST"])
@staff_required
def profile(request: HttpRequest) -> HttpResponse:
    """Each channel on or off, push on this device, the Slack link."""
    me = _staff(request)
    if request.method == "POST":
        services.set_preferences(
            me,
            push="push" in request.POST,
            email="email" in request.POST,
            slack="slack" in request.POST,
        )
        messages.success(request, "Your notification settings are saved.")
        return redirect("notify_profile")
    context = {
        "pref": services.preferences_for(me),
        "subscriptions": PushSubscription.objects.filter(user=me),
        "slack_link": SlackLink.objects.filter(user=me).first(),
        "vapid_public_key": settings.VAPID_PUBLIC_KEY if push.enabled() else "",
        "email_on": bool(settings.EMAIL_HOST),
        "slack_on": slack.enabled(),
    }
    return render(request, "notify/profile.html", context)


def slack_link_url(action: slack.Action) -> str:
    token = signing.dumps({"u": action.slack_user_id, "t": action.team_id}, salt=SLACK_LINK_SALT)
    return settings.SITE_URL + reverse("notify_slack_link", args=[token])


@require_http_methods(["GET", "POST"])
@staff_required
def slack_link(request: HttpRequest, token: str) -> HttpResponse:
    """The link flow: a Slack user whose email matched nobody gets this signed link (valid one
    hour) and confirms, logged in, that the Slack account is theirs."""
    try:
        data = signing.loads(token, salt=SLACK_LINK_SALT, max_age=SLACK_LINK_MAX_AGE)
    except signing.BadSignature:
        messages.error(request, "This link is not valid or has expired. Press the button in Slack again.")
        return redirect("notify_profile")
    if request.method == "POST":
        link = services.link_slack(
            _staff(request), slack_user_id=str(data["u"]), team_id=str(data["t"]), how=SlackLink.How.LINK
        )
        if link is None:
            messages.error(request, "That Slack account, or yours, is already linked to someone else.")
        else:
            messages.success(request, "Your Slack account is linked: its buttons now decide as you.")
        return redirect("notify_profile")
    return render(request, "notify/slack_link.html", {"slack_user_id": data["u"]})


@csrf_exempt  # Slack cannot send a CSRF token; its signature stands in for it.
@require_POST
def slack_interactions(request: HttpRequest) -> HttpResponse:
    """Slack's interactivity request URL. 401 for a bad signature, 400 for a stale or malformed
    request; otherwise 200 at once (Slack waits three seconds at most): a linked person's press
    is decided now (a refusal is told to them ephemerally), an unlinked one is linked by email
    or told how to link, in a task (it needs Slack's users.info)."""
    if not (slack.enabled() and settings.SLACK_SIGNING_SECRET):
        raise Http404("Slack is not configured.")
    try:
        slack.verify(
            body=request.body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
            now=time.time(),
        )
    except slack.StaleRequest as e:
        return HttpResponse(str(e), status=400, content_type="text/plain")
    except slack.SignatureError as e:
        return HttpResponse(str(e), status=401, content_type="text/plain")
    try:
        action = slack.parse_action(slack.parse_body(request.POST.get("payload", "")))
    except ValueError:
        return HttpResponse("Malformed payload.", status=400, content_type="text/plain")
    if action is None:
        return HttpResponse(status=200)  # e.g. the Open button: nothing to decide
    user = services.slack_user(action.slack_user_id)
    if user is None:
        tasks.slack_link_then_act.apply_async(
            (
                action.slack_user_id,
                action.team_id,
                action.channel_id,
                action.request_id,
                action.approve,
                slack_link_url(action),
            )
        )
        return HttpResponse(status=200)
    refusal = slack.act(action, user)
    if refusal:
        tasks.slack_tell.apply_async((action.channel_id, action.slack_user_id, refusal))
    return HttpResponse(status=200)
