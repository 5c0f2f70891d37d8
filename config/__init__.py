# Expose the Celery app so that `celery -A config` and shared tasks find it.
from config.celery import app as celery_app

__all__ = ("celery_app",)
