import pytest

from simulator.validation import InvalidServerEvent, checked, validate_server_event


def test_a_valid_event_passes_the_strict_check():
    event = {"type": "mcp_list_tools.in_progress", "event_id": "event_abc", "item_id": "mcpl_1"}
    assert checked(event) is event
    validate_server_event(event)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "mcp_list_tools.in_progress", "event_id": "event_abc"},  # item_id missing
        {"type": "mcp_list_tools.in_progress", "event_id": "event_abc", "item_id": 7},  # not a string
        {"type": "mcp_list_tools.in_progress", "event_id": "e", "item_id": "i", "output_index": 0},  # unknown field
        {"type": "no.such.event", "event_id": "e"},
    ],
)
def test_an_event_the_sdk_would_not_accept_is_refused_and_logged(event, caplog):
    with pytest.raises(InvalidServerEvent):
        checked(event)
    assert "INVALID SERVER EVENT" in caplog.text
