from django.apps import AppConfig


class RealtimeBridgeConfig(AppConfig):
    name = "realtime_bridge"
    verbose_name = "Realtime bridge"
