"""Celery adapters (house rule 7): ids in, one service call, nothing else."""

from __future__ import annotations

from celery import shared_task

from compliance import services


@shared_task(acks_late=True, ignore_result=True)
def seal_chain() -> None:
    services.ensure_sealed()


@shared_task(acks_late=True, ignore_result=True)
def purge_expired() -> None:
    services.purge_expired()


@shared_task(acks_late=True, ignore_result=True)
def build_export(pk: int) -> None:
    services.build_export(pk)
