"""python -m demo.hotel_mcp --port N [--host 127.0.0.1] [--api-key K]

The room lights go to the MQTT broker in $MQTT_URL (mqtt://host:1883[/topic-root]); unset, they are
kept in memory (demo/hotel_mcp/lights.py).
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from demo.hotel_mcp.hotel import Hotel
from demo.hotel_mcp.lights import LightsError, lights_from_url
from demo.hotel_mcp.server import DEFAULT_API_KEY, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.hotel_mcp", description="The demo hotel's MCP server.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HOTEL_MCP_PORT", "8766")))
    parser.add_argument("--host", default=os.environ.get("HOTEL_MCP_HOST", "127.0.0.1"))
    parser.add_argument(
        "--api-key",
        default=os.environ.get("HOTEL_MCP_API_KEY") or DEFAULT_API_KEY,
        help="value every request must carry in X-API-Key (default: $HOTEL_MCP_API_KEY, else hotel-demo-key)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # MQTT_URL is the demo's own setting (config/settings.py never reads it): the hotel is not Countersign.
    try:
        lights = lights_from_url(os.environ.get("MQTT_URL"))
    except (LightsError, ValueError) as exc:
        parser.exit(2, f"python -m demo.hotel_mcp: {exc}\n")
    try:
        app = create_app(args.api_key, hotel=Hotel(lights), host=args.host)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        lights.close()


if __name__ == "__main__":
    main()
