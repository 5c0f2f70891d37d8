"""The hostile suite's plumbing: Hypothesis profiles and the count of examples run per surface.

`HYPOTHESIS_PROFILE` picks the profile: `ci` (the default, what `make test` runs: a bounded
number of examples, derandomised so a CI run is repeatable) or `fuzz` (`make fuzz`: at least
10,000 examples per surface, fresh randomness each run). Every test counts the examples it
ran against its surface with `surfaces.ran(name)`; the table is printed at the end of the run
(tests/plugins/xdist_env.py, which also gathers the counts of `make test`'s parallel workers).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.hostile import surfaces

# Fixtures here are set up once per test and shared by its examples on purpose: a relay session,
# a logged-in client, a server. Reusing them is the point (the process must still serve after
# the bad input), so the function-scoped-fixture health check does not apply.
_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz", max_examples=surfaces.FUZZ_EXAMPLES, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make fuzz` runs 10,000 examples per surface: minutes per test, not the suite's 300 s.
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        for item in items:
            if item.path.parent.name == "hostile":
                item.add_marker(pytest.mark.timeout(3 * 3600))


# The relay's scripted upstream and a client token, as the relay's own tests use them.
# Deadline tasks recorded instead of sent to a broker, and fast password hashing for personas.
from tests.approvals.conftest import _fast_password_hashing, scheduled  # noqa: E402, F401
from tests.realtime_bridge.conftest import client_token, relay, upstream  # noqa: E402, F401
