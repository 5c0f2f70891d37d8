from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # Registers the tasks with the Celery app in every process, not only in the worker
        # (which autodiscovers them): the services schedule the deadline task by name.
        from approvals import tasks  # noqa: F401
