"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace); the broker
connection and transport are the outage-proof ones of config/broker.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("countersign", amqp="config.broker:BrokerAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
