import json

import pytest
from django.test import Client


@pytest.mark.django_db
@pytest.mark.real_redis
def test_healthz_is_503_and_names_celery_when_no_worker_answers(settings):
    # A queue no worker listens on, so that no worker of another run can answer for us.
    settings.CELERY_TASK_DEFAULT_QUEUE = "nobody-listens"
    response = Client().get("/healthz")
    body = json.loads(response.content)
    assert response.status_code == 503
    assert body["database"]["status"] == "ok"
    assert body["redis"]["status"] == "ok"
    assert body["failing"] == ["celery"]
    assert "no Celery worker" in body["celery"]["error"]


@pytest.mark.django_db
def test_healthz_names_redis_when_the_channel_layer_is_unreachable(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/healthz")
    body = json.loads(response.content)
    assert response.status_code == 503
    assert "redis" in body["failing"]
    assert body["redis"]["status"] == "error"
    assert body["database"]["status"] == "ok"


@pytest.mark.django_db
def test_healthz_only_answers_get():
    assert Client().post("/healthz").status_code == 405
