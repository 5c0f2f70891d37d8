"""The simulator's knobs (REALTIME_PROTOCOL.md section 11), from flags or SIM_* environment variables."""

from __future__ import annotations

import argparse
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any


def _sdk_realtime_models() -> tuple[str, ...]:
    """The Realtime model names the pinned openai SDK knows (its session type's `model` literal),
    so that the simulator accepts what the SDK offers and follows each new release by itself."""
    from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

    names: list[str] = []
    for arg in typing.get_args(RealtimeSessionCreateRequest.model_fields["model"].annotation):
        for name in typing.get_args(arg):
            if isinstance(name, str) and name not in names:
                names.append(name)
    return tuple(names)


KNOWN_MODELS = _sdk_realtime_models()

CHOICES: dict[str, tuple[str, ...]] = {
    "approval_profile": ("split", "held"),
    "list_order": ("completed_first", "item_first"),
    "mcp_call_done_order": ("completed_first", "item_first"),
    "no_approval_autospeak": ("on", "off"),
    "list_fail": ("off", "failed", "failed_with_error"),
    "tool_result": ("ok", "protocol_error", "tool_execution_error", "http_error"),
    "deny_behavior": ("mcp_call_error", "silent"),
    "mcp_egress": ("open", "public"),
}
# The statuses a Responses API fault may answer with: what OpenAI answers when it is rate
# limited, fails, or is overloaded (REALTIME_PROTOCOL.md does not cover them; OpenAI's error docs).
FAULT_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str = "sk-countersign-demo"
    models: tuple[str, ...] = KNOWN_MODELS
    # split: R1 ends before the approval (default); held: R1 stays open through the tool call.
    approval_profile: str = "split"
    # Order of mcp_list_tools.completed vs the conversation.item.done of the list item.
    list_order: str = "completed_first"
    # Also send response.output_item.added/done for the approval request item.
    approval_output_item_events: bool = True
    # Order of response.mcp_call.completed vs conversation.item.done of the mcp_call item.
    mcp_call_done_order: str = "completed_first"
    # Section 6: after a tool call that needed no approval, speak inside the same response.
    no_approval_autospeak: str = "on"
    # Force tool listing to fail (failed_with_error: also send an error event).
    list_fail: str = "off"
    # Force the outcome of tools/call instead of calling the real MCP server's result through.
    tool_result: str = "ok"
    # After a denial: an mcp_call item.done with an error (default: the call ends as finished, what
    # agents-js and the console read as the end of the call), or nothing more (silent).
    deny_behavior: str = "mcp_call_error"
    # Also send response.output_item.done for the mcp_call after approval (section 5.2 knob).
    mcp_call_output_item_done: bool = False
    # Validate every server event strictly against the openai SDK's types before sending it; an
    # invalid one is logged as INVALID SERVER EVENT and ends that socket (1011). Tests turn it on.
    validate_events: bool = False
    # WebSocket ping interval in seconds (OpenAI: about 20.3).
    ping_interval: float = 20.3
    # Seconds before the model's argument deltas start (simulates thinking); 0 in tests.
    latency: float = 0.0
    # SIP: where to send realtime.call.incoming webhooks, and the Standard Webhooks secret.
    webhook_url: str = ""
    webhook_secret: str = ""
    # Responses API faults (retry tests); also set at run time with POST /sim/responses/faults.
    responses_fail_count: int = field(
        default=0,
        metadata={"help": "the next N POST /v1/responses fail with --responses-fail-status (default 0: none)"},
    )
    responses_fail_status: int = field(
        default=500,
        metadata={"help": f"the HTTP status of those failures: {', '.join(map(str, FAULT_STATUSES))} (default 500)"},
    )
    responses_latency: float = field(
        default=0.0, metadata={"help": "seconds every POST /v1/responses waits before it is handled (default 0)"}
    )
    # Which MCP servers the hosted MCP client may reach (simulator/egress.py): open (default), or
    # public (private and loopback hosts refused, as OpenAI does, except the allowed ones).
    mcp_egress: str = field(default="open", metadata={"help": "open (default) or public: refuse private hosts"})
    mcp_egress_allow: str = field(default="", metadata={"help": "hosts/CIDRs reachable despite --mcp-egress public"})
    mcp_egress_deny: str = field(default="", metadata={"help": "hosts/CIDRs never reached (comma-separated)"})
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.responses_fail_status not in FAULT_STATUSES:
            raise ValueError(f"responses_fail_status must be one of {FAULT_STATUSES}, not {self.responses_fail_status}")
        if self.responses_fail_count < 0 or self.responses_latency < 0:
            raise ValueError("responses_fail_count and responses_latency cannot be negative")


def _env_name(name: str) -> str:
    return "SIM_" + name.upper()


def parse_args(argv: list[str] | None = None) -> SimulatorConfig:
    """Flags win over SIM_* environment variables, which win over the defaults."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m simulator", description="An offline OpenAI Realtime API.")
    for f in fields(SimulatorConfig):
        if f.name in ("extra", "models"):
            continue
        default = getattr(defaults, f.name)
        env = os.environ.get(_env_name(f.name))
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help")
        if isinstance(default, bool):
            value = default if env is None else env.lower() in ("1", "true", "on", "yes")
            parser.add_argument(flag, default=value, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = type(default)
            parser.add_argument(
                flag,
                type=kind,
                default=kind(env) if env is not None else default,
                choices=CHOICES.get(f.name),
                help=help_text,
            )
    if os.environ.get("SIMULATOR_API_KEY") and not os.environ.get("SIM_API_KEY"):
        parser.set_defaults(api_key=os.environ["SIMULATOR_API_KEY"])
    args = parser.parse_args(argv)
    return SimulatorConfig(**vars(args))
