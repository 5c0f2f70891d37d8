"""The baseline of bench/relay_overhead.py: a bare websockets pipe, no Django, no checks.

bare_pipe.py PORT UPSTREAM_URL API_KEY [uvloop]
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


async def pipe(client):
    url = sys.argv[2] + client.request.path.removeprefix("/v1/realtime")
    headers = {"Authorization": f"Bearer {sys.argv[3]}"}
    async with connect(url, additional_headers=headers, max_size=None, compression=None) as up:

        async def pump(src, dst):
            async for frame in src:
                await dst.send(frame)

        await asyncio.gather(pump(client, up), pump(up, client), return_exceptions=True)


async def main() -> None:
    async with serve(pipe, "127.0.0.1", int(sys.argv[1]), max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    if sys.argv[4:] == ["uvloop"]:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
