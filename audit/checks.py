"""System checks: a malformed AUDIT_TRUSTED_PUBLIC_KEYS shows at deploy (`manage.py check`,
`migrate`), not in the middle of an audit."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from audit import signing


@checks.register(checks.Tags.security)
def check_trusted_public_keys(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        signing.earlier_public_keys()
    except ImproperlyConfigured as exc:
        # The id as published: SILENCED_SYSTEM_CHECKS entries of operators name it.
        return [checks.Error(str(exc), id="compliance.E001")]
    return []
