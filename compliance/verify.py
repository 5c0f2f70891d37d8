"""Moved to audit/verify.py; these names stay importable from here until the callers move."""

from audit.verify import KeyUse, Report, RowStatus, verify_chain, verify_rows

__all__ = ["KeyUse", "Report", "RowStatus", "verify_chain", "verify_rows"]
