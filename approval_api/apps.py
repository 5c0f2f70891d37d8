from django.apps import AppConfig


class ApprovalApiConfig(AppConfig):
    """The approval API: other gateways and programs ask Countersign's staff over REST."""

    name = "approval_api"
    verbose_name = "Approval API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from approval_api import webhooks
        from approvals import events

        # A decision on one of the API's requests is told to the webhooks of its token.
        events.decision_committed.connect(webhooks.on_decision)
