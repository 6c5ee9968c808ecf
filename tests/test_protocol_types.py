"""OpenAI request validation: JSON booleans are not integers (issue 14.10)."""

import pytest
from pydantic import ValidationError

from pixiu.serve.protocol import ChatCompletionRequest, CompletionRequest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "field", ["max_tokens", "max_completion_tokens", "n", "top_k", "seed", "top_logprobs"]
)
def test_a_boolean_for_an_integer_field_is_rejected(field):
    with pytest.raises(ValidationError, match=f"{field}[\\s\\S]*must be an integer, not a boolean"):
        ChatCompletionRequest.model_validate({**CHAT, field: True})
    with pytest.raises(ValidationError, match="logprobs[\\s\\S]*not a boolean"):
        CompletionRequest.model_validate({"model": "m", "prompt": "hi", "logprobs": True})


def test_integers_and_boolean_fields_still_validate():
    req = ChatCompletionRequest.model_validate(
        {**CHAT, "max_tokens": 3, "n": 2, "logprobs": True, "stream": False}
    )
    assert (req.max_tokens, req.n, req.logprobs, req.stream) == (3, 2, True, False)
