from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance review"

    def ready(self) -> None:
        from compliance import (  # noqa: F401
            checks,  # AUDIT_TRUSTED_PUBLIC_KEYS is well-formed
            signals,  # logins and failed logins → audit rows
        )
