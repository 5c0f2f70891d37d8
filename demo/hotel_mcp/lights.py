"""The demo hotel's room lights: over MQTT as real room controls are, or in memory.

`lights_from_url(os.environ.get("MQTT_URL"))` picks one. With a broker (`mqtt://host:1883[/root]`), a
light change is published, retained, as JSON `{"level": 35, "scene": "relax"}` to
`<root>/rooms/<room>/lights` (root `hotel` unless the URL's path names another), and the hotel reads each
room's state back from what the broker delivers on its subscription to `<root>/rooms/+/lights`. A light
switch in the room, or any other client publishing there, therefore shows up in the hotel's state. Without
MQTT_URL (the embedded default of `make run`) the lights are a dict.

Reference: https://eclipse.dev/paho/files/paho.mqtt.python/html/client.html
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

log = logging.getLogger("demo.hotel_mcp.lights")

# A publish answered (PUBACK) and delivered back to us by the broker takes milliseconds; this is the bound
# after which a light call fails rather than hang the tool call.
MQTT_TIMEOUT_SECONDS = 10.0


class LightsError(RuntimeError):
    """The lights could not be reached or did not confirm a change."""


@dataclass(frozen=True)
class LightState:
    level: int
    scene: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "scene": self.scene}


class Lights(Protocol):
    """Where the hotel's room lights live. `kind` is shown on the state page."""

    kind: str

    def set(self, room: str, state: LightState) -> LightState: ...

    def get(self, room: str) -> LightState | None: ...

    def close(self) -> None: ...


class MemoryLights:
    kind = "memory"

    def __init__(self) -> None:
        self._states: dict[str, LightState] = {}

    def set(self, room: str, state: LightState) -> LightState:
        self._states[room] = state
        return state

    def get(self, room: str) -> LightState | None:
        return self._states.get(room)

    def close(self) -> None:
        pass


def parse_payload(payload: bytes) -> LightState | None:
    """A light state from a message on a lights topic; None for anything else (logged, ignored)."""
    try:
        data = json.loads(payload)
        level, scene = data["level"], data.get("scene")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
            raise ValueError(f"level {level!r}")
        if scene is not None and not isinstance(scene, str):
            raise ValueError(f"scene {scene!r}")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring a lights message that is not {level, scene}: %r (%s)", payload[:200], exc)
        return None
    return LightState(level=level, scene=scene)


class MqttLights:
    """Room lights on an MQTT broker (paho-mqtt, MQTT 3.1.1, QoS 1, retained)."""

    kind = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        root: str = "hotel",
        timeout: float = MQTT_TIMEOUT_SECONDS,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.root = root.strip("/") or "hotel"
        self.timeout = timeout
        self._states: dict[str, LightState] = {}
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hotel-{uuid.uuid4().hex[:12]}")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        if username:
            self._client.username_pw_set(username, password)
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise LightsError(f"cannot reach the MQTT broker (MQTT_URL) at {host}:{port}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise LightsError(f"the MQTT broker at {host}:{port} did not accept our subscription")

    def topic(self, room: str) -> str:
        return f"{self.root}/rooms/{room}/lights"

    # paho's network thread calls these.
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        # Subscribing on every (re)connect: the broker then sends every retained state again.
        client.subscribe(f"{self.root}/rooms/+/lights", qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        room = message.topic.split("/")[-2]
        if not message.payload:
            # An empty retained message clears the topic: the room's lights are unknown again.
            with self._changed:
                self._states.pop(room, None)
            return
        state = parse_payload(message.payload)
        if state is None:
            return
        with self._changed:
            self._states[room] = state
            self._changed.notify_all()

    def set(self, room: str, state: LightState) -> LightState:
        """Publish the new state (retained) and wait until the broker delivers it back to us."""
        payload = json.dumps(state.to_dict())
        info = self._client.publish(self.topic(room), payload, qos=1, retain=True)
        try:
            info.wait_for_publish(self.timeout)
        except (ValueError, RuntimeError) as exc:  # paho: not queued / not connected
            raise LightsError(f"the lights of room {room} did not answer: {exc}") from exc
        if not info.is_published():
            raise LightsError(f"the lights of room {room} did not answer within {self.timeout:.0f} s")
        with self._changed:
            if not self._changed.wait_for(lambda: self._states.get(room) == state, self.timeout):
                raise LightsError(f"the lights of room {room} did not report the change back")
            return self._states[room]

    def get(self, room: str) -> LightState | None:
        with self._changed:
            return self._states.get(room)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def lights_from_url(url: str | None) -> Lights:
    """MqttLights for `mqtt://[user:password@]host[:port][/root]`, MemoryLights when the URL is unset or empty."""
    if not url:
        return MemoryLights()
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883[/topic-root], not {url!r}")
    root = parts.path.strip("/") or "hotel"
    return MqttLights(parts.hostname, parts.port or 1883, root=root, username=parts.username, password=parts.password)
