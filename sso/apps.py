from django.apps import AppConfig


class SsoConfig(AppConfig):
    """Single sign-on: staff sign in through the hotel group's OpenID Connect provider."""

    name = "sso"
    verbose_name = "Single sign-on"
