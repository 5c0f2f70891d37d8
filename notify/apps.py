from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The after-commit hooks approvals/events.py names; and a push subscription makes its
        # person reachable for a rule that escalates at once when nobody of a group is.
        from approvals import events
        from notify import receivers, services

        events.request_opened.connect(receivers.on_request_opened)
        events.request_escalated.connect(receivers.on_request_escalated)
        events.decision_committed.connect(receivers.on_decision_committed)
        if services.reachable_by_push not in events.reachability_providers:
            events.reachability_providers.append(services.reachable_by_push)
