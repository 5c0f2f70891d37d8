"""A real OpenID Connect provider for the single sign-on tests: panva's `oidc-provider` from npm
(tests/oidc/provider.mjs; `.ci/run` installs it with `npm ci`), run by Node."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.processes import ServerProcess, free_port

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
CLIENT_ID = "countersign"
CLIENT_SECRET = "countersign-test-secret"


class Provider:
    def __init__(self, issuer: str, accounts_file: Path, process: ServerProcess) -> None:
        self.issuer = issuer
        self.accounts_file = accounts_file
        self.process = process

    def set_accounts(self, accounts: dict[str, dict[str, object]]) -> None:
        """The directory as it is now (the provider reads it at every sign-in)."""
        self.accounts_file.write_text(json.dumps(accounts))

    def settings(self, **extra: str) -> dict[str, str]:
        """Countersign's environment for this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            **extra,
        }


def node_ready() -> None:
    if shutil.which("node") and (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail("node or tests/oidc/node_modules is missing in CI (.ci/run installs both)")
    pytest.skip("needs node and `npm ci` in tests/oidc (as .ci/run does)")


def start_provider(redirect_uri: str, accounts: dict[str, dict[str, object]], tmp_path: Path) -> Iterator[Provider]:
    node_ready()
    port = free_port()
    accounts_file = tmp_path / "directory.json"
    accounts_file.write_text(json.dumps(accounts))
    # `localhost`, not 127.0.0.1: the browser keeps the provider's cookies apart from Countersign's.
    issuer = f"http://localhost:{port}"
    argv = ["node", str(OIDC_DIR / "provider.mjs"), str(port), redirect_uri, str(accounts_file), "localhost"]
    with ServerProcess(argv, port=port, name="oidc-provider", ready_log="listening ") as proc:
        yield Provider(issuer, accounts_file, proc)
