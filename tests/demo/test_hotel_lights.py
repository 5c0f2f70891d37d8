"""The demo hotel's lights over MQTT (the machine's Mosquitto at 127.0.0.1:1883) and in memory.

Each test run publishes under its own topic root (`mqtt://127.0.0.1:1883/<root>`), so parallel runs on
one broker never see each other's retained lights.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from demo.hotel_mcp import Hotel
from demo.hotel_mcp.lights import LightState, MemoryLights, MqttLights, lights_from_url
from tests.demo.test_hotel_mcp import call
from tests.plugins.hotel import HOTEL_API_KEY, HotelMcp
from tests.plugins.processes import PYTHON, ServerProcess, free_port, port_open

BROKER = ("127.0.0.1", 1883)

needs_mosquitto = pytest.mark.skipif(
    not port_open(BROKER[1], BROKER[0]),
    reason="no MQTT broker listens on 127.0.0.1:1883 (CI runs Mosquitto there; apt-get install mosquitto)",
)


class Subscriber:
    """A plain paho client, as a room's light panel would be: every message it gets goes in a queue."""

    def __init__(self, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.connect(*BROKER)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def next_payload(self, wanted: dict[str, Any], timeout: float = 30) -> mqtt.MQTTMessage:
        """The first message whose JSON payload is `wanted` (retained states of before may come first)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if json.loads(message.payload) == wanted:
                return message
        raise AssertionError(f"no message {wanted} within {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def mqtt_root() -> str:
    return f"countersign-test-{uuid.uuid4().hex[:10]}/hotel"


@pytest.fixture(scope="module")
def mqtt_hotel(mqtt_root: str) -> Iterator[HotelMcp]:
    if not port_open(BROKER[1], BROKER[0]):
        pytest.skip("no MQTT broker listens on 127.0.0.1:1883")
    port = free_port()
    argv = [PYTHON, "-m", "demo.hotel_mcp", "--port", str(port), "--api-key", HOTEL_API_KEY]
    env = {"MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}/{mqtt_root}"}
    with ServerProcess(argv, port=port, env=env, name="hotel_mcp_mqtt", timeout=30) as process:
        yield HotelMcp(base_url=f"http://127.0.0.1:{port}", api_key=HOTEL_API_KEY, process=process)
    # An empty retained message deletes the retained state: leave the broker as we found it.
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cleaner.connect(*BROKER)
    cleaner.loop_start()
    for room in Hotel().rooms:
        cleaner.publish(f"{mqtt_root}/rooms/{room}/lights", b"", qos=1, retain=True).wait_for_publish(10)
    cleaner.loop_stop()
    cleaner.disconnect()


def state_page(hotel: HotelMcp) -> str:
    response = httpx.get(
        f"{hotel.base_url}/state", params={"key": hotel.api_key}, headers={"Accept": "text/html"}, timeout=10
    )
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def lights_cell(page: str, room: str) -> str:
    row = page.split(f'<tr id="room-{room}">', 1)[1].split("</tr>", 1)[0]
    return row.split('<td class="lights">', 1)[1].split("</td>", 1)[0]


@needs_mosquitto
async def test_a_light_tool_call_publishes_retained_and_the_state_page_shows_it(mqtt_hotel, mqtt_root):
    mqtt_hotel.reset()
    panel = Subscriber(f"{mqtt_root}/rooms/1204/lights")
    try:
        panel.next_payload({"level": 35, "scene": "relax"})  # the retained state after reset

        result = await call(mqtt_hotel, "set_room_lighting", {"room": "1204", "scene": "reading"})

        message = panel.next_payload({"level": 70, "scene": "reading"})
        assert message.topic == f"{mqtt_root}/rooms/1204/lights"
    finally:
        panel.close()
    assert result["lighting"] == {"level": 70, "scene": "reading"}
    # Retained: a panel that connects later gets the state at once.
    late = Subscriber(f"{mqtt_root}/rooms/1204/lights")
    try:
        assert late.next_payload({"level": 70, "scene": "reading"}).retain
    finally:
        late.close()
    state = mqtt_hotel.state()
    assert state["lights"] == "mqtt"
    assert state["rooms"]["1204"]["lighting"] == {"level": 70, "scene": "reading"}
    assert lights_cell(state_page(mqtt_hotel), "1204") == "70% (reading)"


@needs_mosquitto
def test_a_switch_in_the_room_is_read_back_from_the_broker(mqtt_hotel, mqtt_root):
    mqtt_hotel.reset()
    switch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    switch.connect(*BROKER)
    switch.loop_start()
    try:
        switch.publish(f"{mqtt_root}/rooms/1410/lights", json.dumps({"level": 0, "scene": "off"}), qos=1, retain=True)
        deadline = time.monotonic() + 30
        while mqtt_hotel.state()["rooms"]["1410"]["lighting"]["level"] != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        switch.loop_stop()
        switch.disconnect()
    assert mqtt_hotel.state()["rooms"]["1410"]["lighting"] == {"level": 0, "scene": "off"}
    assert "0% (off)" in lights_cell(state_page(mqtt_hotel), "1410")


@needs_mosquitto
def test_a_message_that_is_not_a_light_state_is_ignored_and_an_empty_one_clears(mqtt_hotel, mqtt_root):
    mqtt_hotel.reset()
    lights = MqttLights(*BROKER, root=mqtt_root)
    try:
        lights.set("1205", LightState(10, "night"))
        lights._client.publish(f"{mqtt_root}/rooms/1205/lights", b"on", qos=1).wait_for_publish(10)
        lights.set("1204", LightState(100, "bright"))  # after the bad message, in order
        assert lights.get("1205") == LightState(10, "night")

        # An empty retained message clears the topic: the room's lights are unknown again.
        lights._client.publish(f"{mqtt_root}/rooms/1205/lights", b"", qos=1, retain=True).wait_for_publish(10)
        lights.set("1204", LightState(0, "off"))
        assert lights.get("1205") is None
    finally:
        lights.close()


def test_without_mqtt_url_the_lights_are_kept_in_memory():
    assert isinstance(lights_from_url(None), MemoryLights)
    assert isinstance(lights_from_url(""), MemoryLights)
    with pytest.raises(ValueError, match="mqtt://host:1883"):
        lights_from_url("http://127.0.0.1:1883")

    port = free_port()
    argv = [PYTHON, "-m", "demo.hotel_mcp", "--port", str(port), "--api-key", HOTEL_API_KEY]
    with ServerProcess(argv, port=port, env={"MQTT_URL": ""}, name="hotel_mcp_memory", timeout=30) as process:
        hotel = HotelMcp(base_url=f"http://127.0.0.1:{port}", api_key=HOTEL_API_KEY, process=process)
        state = hotel.state()
        assert state["lights"] == "memory"
        assert state["rooms"]["1204"]["lighting"] == {"level": 35, "scene": "relax"}
        assert lights_cell(state_page(hotel), "1204") == "35% (relax)"


def test_the_state_page_needs_the_key_in_the_query_or_the_header(hotel_mcp):
    response = httpx.get(f"{hotel_mcp.base_url}/state", params={"key": "wrong"}, headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert httpx.post(f"{hotel_mcp.base_url}/reset", params={"key": hotel_mcp.api_key}).status_code == 401
    assert "Demo hotel" in state_page(hotel_mcp)


@pytest.mark.parametrize(
    ("url", "message"),
    [("mqtt://127.0.0.1:{port}", "cannot reach the MQTT broker (MQTT_URL)"), ("http://x", "MQTT_URL must look like")],
)
def test_the_hotel_does_not_start_without_its_broker(url, message):
    done = subprocess.run(
        [PYTHON, "-m", "demo.hotel_mcp", "--port", str(free_port())],
        env={**os.environ, "MQTT_URL": url.format(port=free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr.startswith(f"python -m demo.hotel_mcp: {message}")
