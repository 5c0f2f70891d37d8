from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The MCP gateway: Countersign's own MCP endpoint per registered server, which runs only
    what was approved (docs/gateway.md)."""

    name = "gateway"
    verbose_name = "MCP gateway"
    default_auto_field = "django.db.models.BigAutoField"
