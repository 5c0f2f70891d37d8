"""The hotel's state page for people: `GET /state` with `Accept: text/html` (`?key=` carries the API key).

One table row per room: guests, door, lights (as the lights report them, over MQTT or in memory),
checkout, balance and open requests; then the latest activity. It refreshes itself every 5 seconds.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1.5rem}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}th{background:#f3f3f3}"
    ".off{color:#888}"
)


def _lights(lighting: dict[str, Any]) -> str:
    level, scene = lighting.get("level"), lighting.get("scene")
    if level is None:
        return '<span class="off">unknown</span>'
    words = f"{level}%" + (f" ({scene})" if scene else "")
    return words if level else f'<span class="off">{words}</span>'


def _requests(requests: list[dict[str, Any]]) -> str:
    parts = []
    for entry in requests:
        details = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("id", "kind") and v is not None)
        parts.append(f"{entry['kind'].replace('_', ' ')}: {details}")
    return "<br>".join(escape(p) for p in parts)


def render_state(snapshot: dict[str, Any]) -> str:
    rows = []
    for number, room in sorted(snapshot["rooms"].items()):
        folio = room["folio"]
        rows.append(
            f'<tr id="room-{escape(number)}"><td>{escape(number)}</td><td>{escape(room["kind"])}</td>'
            f"<td>{escape(', '.join(room['guests'])) or '<span class=off>vacant</span>'}</td>"
            f"<td>{'locked' if room['door_locked'] else '<b>unlocked</b>'}</td>"
            f'<td class="lights">{_lights(room["lighting"])}</td>'
            f"<td>{escape(room['checkout_time'])}</td>"
            f"<td>{folio['balance']:.2f} {escape(folio['currency'])}</td>"
            f"<td>{_requests(room.get('requests', []))}</td></tr>"
        )
    activity = "".join(
        f"<li>{escape(a['action'])} · room {escape(str(a['room']))}</li>" for a in reversed(snapshot["activity"][-20:])
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">'
        f"<title>Demo hotel</title><style>{_STYLE}</style></head><body><h1>Demo hotel</h1>"
        f"<p>Lights: {escape(snapshot['lights'])}</p>"
        "<table><tr><th>Room</th><th>Kind</th><th>Guests</th><th>Door</th><th>Lights</th><th>Checkout</th>"
        f"<th>Balance</th><th>Requests</th></tr>{''.join(rows)}</table>"
        f"<h2>Activity</h2><ol>{activity or '<li>nothing yet</li>'}</ol></body></html>"
    )
