import pytest
from asgiref.testing import ApplicationCommunicator


@pytest.mark.django_db
async def test_the_asgi_app_serves_the_dashboards_css_and_js_without_debug(settings):
    from config.asgi import application

    settings.DEBUG = False
    for path, kind in (("/static/js/dashboard.js", b"javascript"), ("/static/css/app.css", b"text/css")):
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        comm = ApplicationCommunicator(application, scope)
        await comm.send_input({"type": "http.request", "body": b""})
        start = await comm.receive_output(5)
        assert start["status"] == 200, path
        assert kind in dict(start["headers"])[b"Content-Type"]
