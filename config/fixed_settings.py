"""Settings no environment variable changes, kept out of config/settings.py (which they would
push past the 500 lines a module may have): the beat schedule and the approval API's framework
settings. config/settings.py reads them from here by name."""

from __future__ import annotations

CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Approval API webhooks whose delivery task was lost, or whose retry is due.
    "approval-api-webhooks": {"task": "approval_api.tasks.sweep_webhooks", "schedule": 5.0, "options": {"expires": 10}},
    # Heals a lost or late deadline task (approvals/tasks.py); expires so beats queued while no
    # worker ran do not pile up: the next sweep does the same work.
    "approvals-sweep-overdue": {"task": "approvals.tasks.sweep_overdue", "schedule": 2.0, "options": {"expires": 10}},
    # Releases lapsed claims and forgets dashboards whose process died (approvals/tasks.py).
    "approvals-sweep-claims": {
        "task": "approvals.tasks.sweep_claims_and_presence",
        "schedule": 10.0,
        "options": {"expires": 30},
    },
    # Signs the audit chain's head every minute (compliance/tasks.py); a no-op when nothing changed.
    "compliance-seal-chain": {"task": "compliance.tasks.seal_chain", "schedule": 60.0, "options": {"expires": 50}},
    # Retention: removes payloads older than AUDIT_RETENTION_DAYS, except under legal hold.
    "compliance-purge": {"task": "compliance.tasks.purge_expired", "schedule": 3600.0, "options": {"expires": 600}},
    # Resumes Responses API runs whose approvals are all decided, and re-drives runs whose worker
    # died mid-step or whose retry is due (realtime_bridge/tasks.py).
    "runs-sweep-decided": {"task": "realtime_bridge.tasks.sweep_runs", "schedule": 1.0, "options": {"expires": 10}},
    # Closes relay sessions whose process died (lease run out) and cancels their pending requests.
    "relay-sweep-leases": {
        "task": "realtime_bridge.tasks.sweep_relay_leases",
        "schedule": 5.0,
        "options": {"expires": 15},
    },
}

# The approval API (approval_api/; docs/approval_api.md).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "approval_api.errors.exception_handler",  # one error shape: {"detail", "errors"}
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Countersign approval API",
    "DESCRIPTION": "Ask a hotel's staff to approve a tool call, wait for the answer, or hear it by webhook.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The long poll is an async view outside DRF: approval_api/schema.py adds it to the schema.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "approval_api.schema.add_wait_path"],
}
