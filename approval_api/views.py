"""The approval API's REST endpoints (Django REST framework; schema by drf-spectacular). The long
poll is an async view of its own (wait.py): a DRF view would hold one of Django's sync threads."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approval_api import requests as api_requests
from approval_api import serializers as s
from approval_api.auth import ClientTokenAuthentication, scoped
from approval_api.models import WebhookEndpoint
from approval_api.webhooks import new_secret
from approvals import services
from approvals.models import ClientToken, Scope

ERRORS = {
    400: OpenApiResponse(s.Error, description="Invalid input: nothing was created."),
    401: OpenApiResponse(s.Error, description="No token, or an unknown or revoked one."),
    403: OpenApiResponse(s.Error, description="The token lacks the scope."),
}


class ApiView(APIView):
    authentication_classes = [ClientTokenAuthentication]


def token_of(request: Request) -> ClientToken:
    """The caller's client token (the permission classes have made sure there is one)."""
    assert isinstance(request.auth, ClientToken)
    return request.auth


class RequestList(ApiView):
    permission_classes = [scoped(Scope.REQUESTS_WRITE)]

    @extend_schema(
        operation_id="create_request",
        summary="Ask staff to approve a tool call",
        description=(
            "The request goes through the approval policy like a Realtime one: a rule may allow or deny it at once "
            "(the answer is then in the response), otherwise it waits on the staff dashboards, with the rule's "
            "groups, quorum, escalation and deadline. Wait for the answer with `GET /requests/{id}/wait` or a "
            "webhook."
        ),
        request=s.RequestIn,
        responses={201: s.RequestOut, 409: OpenApiResponse(s.Error, description="The session is closed."), **ERRORS},
        tags=["requests"],
    )
    def post(self, request: Request) -> Response:
        data = s.RequestIn(data=request.data)
        data.is_valid(raise_exception=True)
        v: dict[str, Any] = data.validated_data
        try:
            req = api_requests.create(
                token_of(request),
                server=v["server"],
                tool=v["tool"],
                arguments=v["arguments"],
                session=v.get("session") or {},
                requester=v.get("requester") or {},
            )
        except services.TransitionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        req = api_requests.of_token(token_of(request)).get(pk=req.pk)
        if api_requests.final(req):
            api_requests.mark_read(req)
        return Response(api_requests.to_api(req), status=status.HTTP_201_CREATED, headers={"Location": f"{req.pk}"})


class RequestDetail(ApiView):
    permission_classes = [scoped(Scope.REQUESTS_READ)]

    @extend_schema(
        operation_id="read_request",
        summary="Read a request and its answer",
        responses={
            200: s.RequestOut,
            404: OpenApiResponse(s.Error, description="No such request of this token."),
            **ERRORS,
        },
        tags=["requests"],
    )
    def get(self, request: Request, pk: int) -> Response:
        req = get_object_or_404(api_requests.of_token(token_of(request)), pk=pk)
        api_requests.mark_read(req)
        return Response(api_requests.to_api(req))


class WebhookList(ApiView):
    permission_classes = [scoped(Scope.WEBHOOKS)]

    @extend_schema(operation_id="list_webhooks", responses={200: s.WebhookOut(many=True), **ERRORS}, tags=["webhooks"])
    def get(self, request: Request) -> Response:
        found = WebhookEndpoint.objects.filter(client_token=token_of(request), disabled_at__isnull=True)
        return Response(s.WebhookOut(found, many=True).data)

    @extend_schema(
        operation_id="create_webhook",
        summary="Subscribe a URL to this token's decisions",
        description=(
            "Every decision on a request this token created is POSTed to the URL as "
            '`{"type": "approval.decided", "timestamp": ..., "data": <request>}`, signed as Standard Webhooks '
            "specifies (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the secret returned here once. "
            "Retried with backoff until the URL answers 2xx."
        ),
        request=s.WebhookIn,
        responses={201: s.WebhookCreated, **ERRORS},
        tags=["webhooks"],
    )
    def post(self, request: Request) -> Response:
        data = s.WebhookIn(data=request.data)
        data.is_valid(raise_exception=True)
        secret = new_secret()
        endpoint = WebhookEndpoint.objects.create(
            client_token=token_of(request),
            url=data.validated_data["url"],
            description=data.validated_data.get("description", ""),
            secret=secret,
        )
        return Response({**s.WebhookOut(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)


class WebhookDetail(ApiView):
    permission_classes = [scoped(Scope.WEBHOOKS)]

    @extend_schema(
        operation_id="delete_webhook",
        summary="Stop a subscription",
        responses={204: None, 404: OpenApiResponse(s.Error), **ERRORS},
        tags=["webhooks"],
    )
    def delete(self, request: Request, pk: int) -> Response:
        with transaction.atomic():
            endpoint = get_object_or_404(
                WebhookEndpoint.objects.select_for_update(),
                pk=pk,
                client_token=token_of(request),
                disabled_at__isnull=True,
            )
            endpoint.disabled_at = timezone.now()
            endpoint.save(update_fields=["disabled_at"])
        return Response(status=status.HTTP_204_NO_CONTENT)
