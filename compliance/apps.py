from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance review"

    def ready(self) -> None:
        from audit.verify import register_check
        from compliance import (
            integrity,
            signals,  # noqa: F401  logins and failed logins → audit rows
        )

        # verify_audit checks purges against their records and requests against their rows.
        register_check(integrity.PurgeCoverage)
        register_check(integrity.RequestStates)
