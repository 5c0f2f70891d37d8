"""`python -m simulator --port N [knobs]`: an offline OpenAI Realtime API (see docs/simulator.md)."""

from __future__ import annotations

import logging

import uvicorn

from simulator.app import create_app
from simulator.config import parse_args


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            # Section 1.1: the real server pings about every 20.3 s; there is no application-level ping.
            ws_ping_interval=config.ping_interval,
            ws_ping_timeout=max(config.ping_interval, 20.0),
            timeout_graceful_shutdown=5,
            log_level="info",
        )
    )
    # uvicorn handles SIGTERM and SIGINT itself: it stops accepting, closes open WebSockets, waits for
    # running handlers (at most timeout_graceful_shutdown), then re-raises the signal to exit.
    server.run()


if __name__ == "__main__":
    main()
