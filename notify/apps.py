from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # approvals/events.py names the after-commit hooks (request_opened, request_escalated,
        # decision_committed). Connected only where they exist, so this app also runs against an
        # approvals that has not grown them yet (the receivers are then called by nobody).
        from approvals import events
        from notify import receivers

        for hook_name, receiver in (
            ("request_opened", receivers.on_request_opened),
            ("request_escalated", receivers.on_request_escalated),
            ("decision_committed", receivers.on_decision_committed),
        ):
            hook = getattr(events, hook_name, None)
            if hook is not None:
                hook.connect(receiver)
