from typing import Any

from django.apps import AppConfig


class RealtimeBridgeConfig(AppConfig):
    name = "realtime_bridge"
    verbose_name = "Realtime bridge"

    def ready(self) -> None:
        from approvals import events
        from realtime_bridge import cards, kinds, runs, tasks  # noqa: F401  kinds: audit labels; tasks: registered by name

        cards.register()  # a card shows its session's call or run

        def resume_run(*, kind: str, session_id: int, **kwargs: Any) -> None:
            # An answer in a Responses session: nobody holds a socket for it, so the relay
            # nudge goes nowhere; queue the waiting run's next step instead.
            runs.on_decision(kind=kind, session_id=session_id)

        events.decision_committed.connect(resume_run)
