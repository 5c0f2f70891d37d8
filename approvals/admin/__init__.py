"""The admin pages (Django imports this module to register them): the registry (servers, tools,
tokens), the policy (rules, escalation steps, versions, dry run) and the records (requests,
sessions, audit rows)."""

from approvals.admin import policies, records, registry
from approvals.admin.registry import MASK, McpServerForm, mask_headers

__all__ = ["MASK", "McpServerForm", "mask_headers", "policies", "records", "registry"]
