"""Keys at first run (issue 15): `make run` with a real OPENAI_API_KEY and no keys starts without a
traceback, writing them to var/secrets.env; `manage.py init_secrets` writes them for production."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.plugins.processes import BASE_DIR, free_port

KEYS = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "AUDIT_SIGNING_KEY")


def clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """This environment without any key, DEBUG or database of the test run, on `var_dir`."""
    drop = {*KEYS, *(f"{k}_FILE" for k in KEYS), "DEBUG", "DATABASE_URL", "SECRETS_FILE", "PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "COUNTERSIGN_VAR_DIR": str(var_dir), "OPENAI_API_KEY": "sk-test", **extra}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=120
    )


def test_it_says_in_one_line_which_key_is_missing_and_how_to_write_it(tmp_path):
    result = manage(clean_env(tmp_path), "check")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Countersign is not configured: SECRET_KEY is required unless DEBUG or demo mode is on;"
        " `python manage.py init_secrets` writes the keys to SECRETS_FILE (README, Production)"
    ]


def test_init_secrets_writes_a_0600_file_that_settings_read_and_refuses_to_overwrite_it(tmp_path):
    env = clean_env(tmp_path)
    written = manage(env, "init_secrets")
    assert written.returncode == 0, written.stderr
    path = tmp_path / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert all(f"\n{name}=" in first for name in KEYS)
    assert manage(env, "check").returncode == 0

    again = manage(env, "init_secrets")
    assert again.returncode != 0 and "exists; pass --force" in again.stderr
    assert path.read_text() == first
    forced = manage(env, "init_secrets", "--force")
    assert forced.returncode == 0 and path.read_text() != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_secrets_writes_where_it_is_told(tmp_path):
    target = tmp_path / "etc" / "countersign.env"
    result = manage(clean_env(tmp_path), "init_secrets", "--path", str(target))
    assert result.returncode == 0, result.stderr
    assert f"EnvironmentFile={target}" in result.stdout
    env = clean_env(tmp_path / "elsewhere", SECRETS_FILE=str(target))
    assert manage(env, "check").returncode == 0


def test_the_environment_wins_over_the_file(tmp_path):
    env = clean_env(tmp_path)
    assert manage(env, "init_secrets").returncode == 0
    bad = manage({**env, "FIELD_ENCRYPTION_KEYS": "not-a-fernet-key"}, "check")
    assert "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key" in bad.stderr


@pytest.mark.e2e
@pytest.mark.django_db
def test_make_run_with_a_real_key_and_no_keys_writes_them_and_serves(tmp_path, settings):
    port = free_port()
    env = clean_env(
        tmp_path,
        PORT=str(port),
        REDIS_URL=settings.REDIS_URL,
        CHANNELS_PREFIX=f"firstrun{port}",
        CELERY_QUEUE=f"firstrun{port}",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "config.embedded", "run"],
            env=env,
            cwd=BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180  # migrations on a loaded machine
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "countersign_pending_requests" in metrics.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert "Traceback" not in output, output
    assert f"random ones were\n  written to {tmp_path / 'secrets.env'}" in output
    assert stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode) == 0o600
    assert (tmp_path / "prometheus").is_dir()


def test_a_demo_runs_keys_are_kept_when_a_real_key_arrives(tmp_path):
    from observability import secrets

    (tmp_path / "field_encryption_key").write_text("demo-fernet-key\n")
    (tmp_path / "audit_signing_key").write_text("demo-signing-key")
    added = secrets.ensure({"OPENAI_API_KEY": "sk-test", "SECRET_KEY": "set"}, tmp_path / "s.env", var_dir=tmp_path)
    assert added == ["FIELD_ENCRYPTION_KEYS", "AUDIT_SIGNING_KEY"]
    values = secrets.read_env_file(tmp_path / "s.env")
    assert values == {"FIELD_ENCRYPTION_KEYS": "demo-fernet-key", "AUDIT_SIGNING_KEY": "demo-signing-key"}
    assert stat.S_IMODE((tmp_path / "s.env").stat().st_mode) == 0o600
    assert secrets.ensure({"SECRET_KEY": "set"}, tmp_path / "s.env", var_dir=tmp_path) == []
