"""Logins and failed logins are admin events of the audit trail. Django's own auth signals are the
interface here (the login view is Django's); each handler is one audit.writer.record call."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from audit import writer
from compliance.models import AuditKind


def _client(request: HttpRequest | None) -> dict[str, str]:
    if request is None:
        return {}
    return {"ip": request.META.get("REMOTE_ADDR", ""), "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200]}


@receiver(user_logged_in, dispatch_uid="compliance_audit_login")
def audit_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    with transaction.atomic():
        writer.record(kind=AuditKind.LOGIN, actor=user, actor_label=user.get_username(), payload=_client(request))


@receiver(user_login_failed, dispatch_uid="compliance_audit_login_failed")
def audit_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any) -> None:
    # Django has already masked the password in `credentials`; only the name typed is kept.
    username = str(credentials.get("username", ""))[:150]
    with transaction.atomic():
        writer.record(
            kind=AuditKind.LOGIN_FAILED, actor_label=username, payload={"username": username, **_client(request)}
        )
