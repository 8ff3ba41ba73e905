"""The API refuses requests without a valid bearer key."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Served


@pytest.mark.parametrize("key", ["", "garbage", "ih-" + "A" * 43, "' OR '1'='1"])
def test_wrong_or_missing_key_is_401(real_server: Served, key: str) -> None:
    client = openai.OpenAI(base_url=real_server.v1, api_key=key or "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(
        real_server.v1 + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_health_and_metrics_need_no_key(real_server: Served) -> None:
    assert httpx.get(real_server.base_url + "/health").json()["status"] == "ok"
    assert httpx.get(real_server.base_url + "/metrics").status_code == 200
