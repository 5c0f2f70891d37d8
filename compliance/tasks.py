"""Celery adapters (house rule 7): ids in, one service call, nothing else."""

from __future__ import annotations

from celery import shared_task

from audit.sealing import ensure_sealed
from compliance import services
from compliance.exports import build_export_task as build_export

__all__ = ["build_export", "purge_expired", "seal_chain"]


@shared_task(acks_late=True, ignore_result=True)
def seal_chain() -> None:
    ensure_sealed()


@shared_task(acks_late=True, ignore_result=True)
def purge_expired() -> None:
    services.purge_expired()
