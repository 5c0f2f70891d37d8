"""A real SMTP server for tests (aiosmtpd on a free loopback port) that records what it accepts.

def test_something(smtp_server, settings):
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.port
    ...
    [message] = smtp_server.wait_for(1)
    message.to, message.subject, message.body
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.plugins.processes import free_port


@dataclass
class Mail:
    mail_from: str
    to: list[str]
    subject: str
    body: str
    at: float


@dataclass
class SmtpStandIn:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Mail] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(("plain",))
        mail = Mail(
            mail_from=envelope.mail_from,
            to=list(envelope.rcpt_tos),
            subject=str(parsed["Subject"]),
            body=body.get_content() if body is not None else "",
            at=time.time(),
        )
        with self.condition:
            self.messages.append(mail)
            self.condition.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        with self.condition:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} emails arrived, expected {count}")
                self.condition.wait(left)
            return list(self.messages)


class running_smtp_server:
    def __enter__(self) -> SmtpStandIn:
        self.stand_in = SmtpStandIn(port=free_port())
        self.controller = Controller(self.stand_in, hostname=self.stand_in.host, port=self.stand_in.port)
        self.controller.start()
        return self.stand_in

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpStandIn]:
    with running_smtp_server() as stand_in:
        yield stand_in
