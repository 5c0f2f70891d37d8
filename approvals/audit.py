"""Moved to audit/writer.py; these names stay importable from here until the callers move."""

from audit.writer import HEAD_PK, record, record_many

__all__ = ["HEAD_PK", "record", "record_many"]
