"""Moved to audit/checks.py (registered by the audit app); importable from here until the callers move."""

from audit.checks import check_trusted_public_keys

__all__ = ["check_trusted_public_keys"]
