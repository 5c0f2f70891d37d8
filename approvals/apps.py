from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        # Registers the tasks with the Celery app in every process, not only in the worker
        # (which autodiscovers them): the services schedule the deadline task by name.
        from approvals import events, signals, tasks  # noqa: F401
        from approvals.services import decisions

        # A staff member's open dashboards close when they log out or lose access (signals.py).
        user_logged_out.connect(signals.on_logged_out, dispatch_uid="approvals_close_dashboards_on_logout")
        post_save.connect(
            signals.on_user_saved, sender=get_user_model(), dispatch_uid="approvals_close_dashboards_on_user_change"
        )

        def skip_step(*, request_id: int, **kwargs: object) -> None:
            decisions.escalate_if_nobody_online(request_id)

        events.step_reached.connect(skip_step)
