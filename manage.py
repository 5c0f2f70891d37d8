#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] == ["init_secrets"]:
        # It writes the keys that settings would otherwise demand: let settings start without them.
        os.environ["COUNTERSIGN_WRITING_SECRETS"] = "1"
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A missing or bad setting is the operator's to fix: one line saying which, no traceback.
        sys.exit(f"Countersign is not configured: {exc}")
