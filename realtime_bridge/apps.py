from django.apps import AppConfig


class RealtimeBridgeConfig(AppConfig):
    name = "realtime_bridge"
    verbose_name = "Realtime bridge"

    def ready(self) -> None:
        from realtime_bridge import cards, kinds, signals  # noqa: F401  kinds: the call audit kinds' labels

        cards.register()  # a card shows its session's call or run
