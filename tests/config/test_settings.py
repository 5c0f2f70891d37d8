import os
import subprocess
import sys

import pytest

from config.settings import env_bool, env_int


def test_env_bool_refuses_anything_but_true_or_false(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("X_FLAG", "yes please")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be True or False"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_FLAG", "TRUE")
    assert env_bool("X_FLAG", False) is True


def test_env_int_names_the_variable_on_a_bad_value(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("X_NUM", "sixty")
    with pytest.raises(ImproperlyConfigured, match="X_NUM must be an integer"):
        env_int("X_NUM", 1)


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "SECRET_KEY", "DEBUG", "FIELD_ENCRYPTION_KEYS")
    }
    # No keys file either (a `make run` of this checkout may have written var/secrets.env).
    base["SECRETS_FILE"] = os.devnull + ".absent"
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_secret_key_is_required_outside_debug_and_demo_mode():
    result = _check({"OPENAI_API_KEY": "sk-real"})
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_the_field_encryption_key_is_required_outside_debug_and_demo_mode():
    result = _check({"OPENAI_API_KEY": "sk-real", "SECRET_KEY": "s" * 60})
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is required" in result.stderr


def test_check_deploy_is_clean_under_production_like_settings():
    result = _check(
        {
            "OPENAI_API_KEY": "sk-real",
            "SECRET_KEY": "x" * 60 + "production-like-secret-key-with-enough-entropy-1234567890",
            "SECURE_SSL": "True",
            "ALLOWED_HOSTS": "countersign.example.com",
            "FIELD_ENCRYPTION_KEYS": "X" * 43 + "=",
        },
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_noinput_reads_the_documented_variables_and_the_account_can_log_in(tmp_path):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tests.plugins.stack import django_env

    env = {
        **os.environ,
        **django_env(),
        "DJANGO_SUPERUSER_USERNAME": "dana",
        "DJANGO_SUPERUSER_PASSWORD": "a long enough password 42",
        "DJANGO_SUPERUSER_EMAIL": "dana@example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    user = get_user_model().objects.get(username="dana")
    assert user.is_superuser and user.is_staff and user.email == "dana@example.org"
    client = Client()
    response = client.post("/accounts/login/", {"username": "dana", "password": "a long enough password 42"})
    assert response.status_code == 302 and response["Location"] == "/"
