"""A `fastmcp` 4.x server with ten tools (a hotel's front desk), run by the probe tests in its own
virtualenv (tests/mcp_servers/envs.py): fastmcp is not a dependency of Countersign.

    python fastmcp_ten.py --transport http|sse --port N [--path /mcp] [--bad-names]

`--bad-names` renames two of the ten as MCP allows and OpenAI's function names do not: a dotted
`files.read` and a 70-character name. Prints "serving" once it listens.
"""

from __future__ import annotations

import argparse
from typing import Annotated, Literal

from fastmcp import FastMCP
from mcp_types import ToolAnnotations

LONG_NAME = "look_up_the_complete_folio_history_of_a_guest_including_every_charge_x"  # 70 characters
READ_ONLY = ToolAnnotations(readOnlyHint=True)


def build(bad_names: bool) -> FastMCP:
    mcp = FastMCP("front-desk-ten")

    @mcp.tool(annotations=READ_ONLY)
    def get_room_status(room: str) -> str:
        """Whether a room is occupied, clean and locked."""
        return f"room {room}: occupied, clean, locked"

    @mcp.tool(annotations=READ_ONLY)
    def lookup_booking(booking_id: str) -> str:
        """A booking's guest, room and dates."""
        return f"booking {booking_id}: room 1204, 2 nights"

    @mcp.tool
    def unlock_door(room: str, reason: str = "") -> str:
        """Unlock a room's door remotely."""
        return f"room {room} unlocked"

    @mcp.tool
    def set_room_lighting(room: str, level: Annotated[int, "0-100"] = 50) -> str:
        """Set a room's lights."""
        return f"room {room} lights at {level}"

    @mcp.tool
    def send_towels(room: str, count: int = 2) -> str:
        """Send fresh towels to a room."""
        return f"{count} towels to {room}"

    @mcp.tool
    def book_taxi(room: str, when: str) -> str:
        """Book a taxi for a guest."""
        return f"taxi for {room} at {when}"

    @mcp.tool
    def set_wakeup_call(room: str, time: str) -> str:
        """Set a wake-up call."""
        return f"wake-up for {room} at {time}"

    @mcp.tool
    def issue_refund(booking_id: str, amount: float, currency: Literal["EUR", "USD"] = "EUR") -> str:
        """Refund part of a folio."""
        return f"refunded {amount} {currency} on {booking_id}"

    @mcp.tool(name="files.read" if bad_names else "read_file", annotations=READ_ONLY)
    def read_file(path: str) -> str:
        """Read one of the front desk's files."""
        return f"contents of {path}"

    @mcp.tool(name=LONG_NAME if bad_names else "folio_history", annotations=READ_ONLY)
    def folio_history(booking_id: str) -> str:
        """Every charge on a booking's folio."""
        return f"folio of {booking_id}: empty"

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["http", "sse"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=None)
    parser.add_argument("--bad-names", action="store_true")
    args = parser.parse_args()
    mcp = build(args.bad_names)
    print("serving", flush=True)
    mcp.run(transport=args.transport, host="127.0.0.1", port=args.port, path=args.path, show_banner=False)


if __name__ == "__main__":
    main()
