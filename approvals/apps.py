from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # Registers the tasks with the Celery app in every process, not only in the worker
        # (which autodiscovers them): the services schedule the deadline task by name.
        from approvals import (
            events,
            tasks,  # noqa: F401
        )
        from approvals.services import decisions

        def skip_step(*, request_id: int, **kwargs: object) -> None:
            decisions.escalate_if_nobody_online(request_id)

        events.step_reached.connect(skip_step)
