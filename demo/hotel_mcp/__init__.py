"""The demo hotel's MCP server: `create_app(api_key)` and its state, `Hotel`."""

from demo.hotel_mcp.hotel import Hotel, HotelError
from demo.hotel_mcp.server import DEFAULT_API_KEY, build_mcp, create_app

__all__ = ["DEFAULT_API_KEY", "Hotel", "HotelError", "build_mcp", "create_app"]
