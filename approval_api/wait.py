"""`GET /api/v1/requests/{id}/wait?timeout=N`: the long poll. Answers as soon as the request is
final, or after `timeout` seconds (at most APPROVAL_API_MAX_WAIT_SECONDS) with it still pending.

Async, so a waiting caller holds no thread: it listens on the channel layer's group of the
request's session, where every decision is announced from whichever process commits it (the same
message a relay hears), and looks at the database once a second as well, for what is not
announced there (a cancellation) and for a message lost with a Redis outage.
"""

from __future__ import annotations

import asyncio
import contextlib

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from approval_api import requests as api_requests
from approval_api.auth import plain_request_token
from approvals import events
from approvals.models import ApprovalRequest, ClientToken, Scope

RECHECK_SECONDS = 1.0


def _load(token: ClientToken, pk: int) -> ApprovalRequest | None:
    return api_requests.of_token(token).filter(pk=pk).first()


def _answer(req: ApprovalRequest) -> JsonResponse:
    api_requests.mark_read(req)
    return JsonResponse(api_requests.to_api(req))


def _timeout(raw: str | None) -> float | None:
    limit = float(settings.APPROVAL_API_MAX_WAIT_SECONDS)
    if raw is None or raw == "":
        return min(30.0, limit)
    try:
        value = float(raw)
    except ValueError:
        return None
    if not 0 <= value <= limit:
        return None
    return value


async def wait(request: HttpRequest, pk: int) -> JsonResponse:
    if request.method != "GET":
        return JsonResponse({"detail": "Method not allowed."}, status=405)
    token, code, message = await sync_to_async(plain_request_token)(request, Scope.REQUESTS_READ)
    if token is None:
        headers = {"WWW-Authenticate": 'Bearer realm="countersign"'} if code == 401 else {}
        return JsonResponse({"detail": message}, status=code, headers=headers)
    timeout = _timeout(request.GET.get("timeout"))
    if timeout is None:
        limit = settings.APPROVAL_API_MAX_WAIT_SECONDS
        return JsonResponse({"detail": f"timeout must be a number of seconds from 0 to {limit}."}, status=400)
    req = await sync_to_async(_load)(token, pk)
    if req is None:
        return JsonResponse({"detail": "No such request of this token."}, status=404)
    if api_requests.final(req) or timeout == 0:
        return await sync_to_async(_answer)(req)

    layer = get_channel_layer()
    group = events.session_group(req.session_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = await layer.new_channel() if layer is not None else ""
    if layer is not None:
        await layer.group_add(group, channel)
    try:
        while True:
            req = await sync_to_async(_load)(token, pk)
            left = deadline - loop.time()
            if req is None or api_requests.final(req) or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                if layer is not None:
                    await asyncio.wait_for(layer.receive(channel), timeout=min(RECHECK_SECONDS, left))
                else:
                    await asyncio.sleep(min(RECHECK_SECONDS, left))
    finally:
        if layer is not None:
            await layer.group_discard(group, channel)
    if req is None:
        return JsonResponse({"detail": "No such request of this token."}, status=404)
    return await sync_to_async(_answer)(req)
