from __future__ import annotations

from celery import shared_task

from approval_api import webhooks

__all__ = ["deliver_webhook", "sweep_webhooks"]


@shared_task(name=webhooks.DELIVER_TASK, ignore_result=True)
def deliver_webhook(delivery_id: int) -> None:
    webhooks.attempt(delivery_id)


@shared_task(name="approval_api.tasks.sweep_webhooks", ignore_result=True)
def sweep_webhooks() -> None:
    for delivery_id in webhooks.due():
        webhooks.attempt(delivery_id)
