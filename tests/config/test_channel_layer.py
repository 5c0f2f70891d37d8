import asyncio

import pytest
from channels.layers import get_channel_layer


@pytest.mark.real_redis
async def test_an_idle_receiver_outlives_the_layers_blocking_pop_and_still_gets_its_message():
    # Regression: with redis-py's default 5 s read timeout, a receive that waited longer than
    # the layer's 5 s BZPOPMIN failed with "Timeout reading from …" and killed the consumer.
    layer = get_channel_layer()
    channel = await layer.new_channel()

    async def send_late() -> None:
        await asyncio.sleep(6.5)
        await layer.send(channel, {"type": "late.message", "n": 1})

    sender = asyncio.create_task(send_late())
    async with asyncio.timeout(20):
        message = await layer.receive(channel)
    await sender
    assert message == {"type": "late.message", "n": 1}
