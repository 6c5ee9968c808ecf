"""Schemathesis fuzzes every operation of the server's own OpenAPI spec, with valid and invalid inputs
(wrong types, out-of-range numbers, missing fields, odd strings), and checks that nothing answers 5xx.

The fake engine keeps it fast and hermetic; derandomized Hypothesis makes the run the same every time."""

from __future__ import annotations

import schemathesis
from fake_engine import FakeEngine
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from pixiu.serve import api

# two served models, so `model` can name a real one or not; a small context so long prompts hit the limit
app = api.create_app({"fake": FakeEngine("fake"), "smollm2-135m": FakeEngine("smollm2-135m")})
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
SERVED = ["fake", "smollm2-135m"]


@schema.hook
def before_generate_body(context, strategy):
    """A random `model` string almost never names a served model, so nearly every request would stop at the
    404; point most string models at a served one (an empty one stays, for the 404) so generation runs."""

    def served(body):
        if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
            body = {**body, "model": SERVED[len(body["model"]) % 2]}
        return body

    return strategy.map(served)


def test_the_spec_covers_the_openai_routes():
    paths = app.openapi()["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions", "/health"} <= set(paths)
    chat = paths["/v1/chat/completions"]["post"]
    assert {"200", "400", "404"} <= set(chat["responses"])


@schema.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    if response.status_code >= 400:  # every error leaves in OpenAI's shape
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
