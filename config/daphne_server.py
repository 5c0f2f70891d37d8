"""Daphne as Countersign runs it: `python -m config.daphne_server [daphne's own arguments]`.

Daphne (4.2) is fine for the staff pages, but as shipped it would break the relay at
/v1/realtime in three ways, each fixed here without leaving Daphne's own CLI:
- it drops the `reason` of an ASGI `websocket.close` (OpenAI's clients read the reason:
  "invalid_request_error.invalid_api_key"); here the reason goes into the close frame;
- autobahn lets an application send only 1000 and 3000-4999, so upstream's 1001/1011/1012 had
  to be renamed 4001/4011/4012; here every code a server may send (RFC 6455 7.4.1) passes, and
  the scope says so (`extensions["countersign.close_codes"]`, read by RelayConsumer);
- its default message limit is 1 MiB and autobahn drops the TCP connection without a close
  frame above it, while OpenAI accepts audio appends of about 15 MiB; here the limit is
  MAX_MESSAGE_BYTES unless given on the command line, and a message above it is answered with
  a close frame (1009, "message too big") instead of a dropped connection.

`make run` serves the relay on `run_relay` (RELAY_PORT); Daphne keeps serving /v1/realtime
too, with the same codes, reasons and limits.
"""

from __future__ import annotations

import sys
from typing import Any

from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

# Twice the relay's own limit (realtime_bridge.gate.MAX_CLIENT_MESSAGE_CHARS, 16 MiB), as
# run_relay's max_size: a message between the two reaches the relay, which answers it with an
# `error` event and a close; only a bigger one is cut by the server itself (with 1009).
MAX_MESSAGE_BYTES = 32 * 2**20
CLOSE_CODES_EXTENSION = "countersign.close_codes"
# The codes a server may put in a close frame (RFC 6455 7.4.1; 1004-1006, 1010 and 1015 may
# not be sent by a server), and the ranges for libraries and applications.
SERVER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})
MAX_REASON_BYTES = 123  # a control frame's payload is at most 125 bytes, 2 of them the code


def close_frame(code: int | None, reason: str | None) -> tuple[int, bytes | None]:
    """The code and UTF-8 reason to send for an ASGI `websocket.close`: a code no server may
    send becomes 1011, a reason too long for a control frame is cut on a character boundary."""
    code = 1000 if code is None else int(code)
    if code not in SERVER_CLOSE_CODES and not 3000 <= code <= 4999:
        code = 1011
    if not reason:
        return code, None
    encoded = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return code, encoded.decode("utf-8", "ignore").encode("utf-8")


class CountersignWebSocketProtocol(WebSocketProtocol):
    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            # Daphne's own handle_reply drops the reason and, through autobahn's sendClose,
            # refuses 1001-1014; sendCloseFrame is autobahn's own path for any valid frame.
            code, reason = close_frame(message.get("code"), message.get("reason"))
            self.sendCloseFrame(code=code, reasonUtf8=reason)
            return
        super().handle_reply(message)


class CountersignWebSocketFactory(WebSocketFactory):
    protocol = CountersignWebSocketProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A server default is to drop the TCP connection on a protocol error or an oversized
        # message; a client then sees 1006 and no reason. Send the close frame first. (Daphne
        # sets its own options afterwards; failByDrop is not one of them.)
        self.setProtocolOptions(failByDrop=False)


class CountersignServer(Server):
    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            scope["extensions"] = {**scope.get("extensions", {}), CLOSE_CODES_EXTENSION: {}}
        return super().create_application(protocol, scope)

    def run(self) -> None:
        # Server.run builds its factory from the module's name for it: ours instead.
        daphne_server.WebSocketFactory = CountersignWebSocketFactory
        super().run()


class CountersignCLI(CommandLineInterface):
    server_class = CountersignServer


def with_size_limits(argv: list[str]) -> list[str]:
    """Daphne's arguments, with MAX_MESSAGE_BYTES for the message and frame limits that are not
    given."""
    extra: list[str] = []
    for option in ("--websocket-max-message-size", "--websocket-max-frame-size"):
        if not any(arg == option or arg.startswith(option + "=") for arg in argv):
            extra += [option, str(MAX_MESSAGE_BYTES)]
    return extra + argv


def main(argv: list[str] | None = None) -> None:
    CountersignCLI().run(with_size_limits(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
