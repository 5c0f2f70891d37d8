from django.apps import AppConfig


class RealtimeBridgeConfig(AppConfig):
    name = "realtime_bridge"
    verbose_name = "Realtime bridge"

    def ready(self) -> None:
        from realtime_bridge import signals  # noqa: F401  a decision resumes its Responses run
