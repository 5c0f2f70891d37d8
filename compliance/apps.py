from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance review"

    def ready(self) -> None:
        from compliance import signals  # noqa: F401  logins and failed logins → audit rows
