"""The fake gateway listens: answers follow the prompt where the schema allows, and model ids may be URL-encoded."""

from __future__ import annotations

from typing import Literal

import pydantic
import requests

from dottxt import DotTxt
from dottxt.testing import FakeGateway


class SupportTicket(pydantic.BaseModel):
    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str


def triage(gw: FakeGateway, prompt: str) -> SupportTicket:
    with DotTxt(api_key="anything", base_url=gw.base_url, max_retries=0) as client:
        return client.generate(model="dottxt/fake-model", response_format=SupportTicket, input=prompt)


def test_enum_values_follow_the_words_of_the_prompt() -> None:
    with FakeGateway() as gw:
        assert triage(gw, "my billing is wrong: I was charged twice").intent == "billing"
        assert triage(gw, "My app crashes on login").intent == "technical"


def test_three_prompts_get_three_answers_in_their_own_words_the_same_for_a_seed() -> None:
    prompts = ["Refund my invoice please", "The dashboard freezes on Safari", "Love the export feature"]
    with FakeGateway(seed=7) as gw, FakeGateway(seed=7) as twin:
        replies = [triage(gw, prompt).reply for prompt in prompts]
        assert len(set(replies)) == 3
        for prompt, reply in zip(prompts, replies, strict=True):
            own = {word.lower() for word in prompt.split() if len(word) > 3}
            assert own & {word.strip('.,!?"').lower() for word in reply.split()}, (prompt, reply)
        assert [triage(twin, prompt).reply for prompt in prompts] == replies


def test_a_model_id_with_an_encoded_slash_is_found() -> None:
    with FakeGateway(models=("openai/gpt-oss-20b",)) as gw, requests.Session() as session:
        session.trust_env = False
        response = session.get(f"{gw.base_url}/models/openai%2Fgpt-oss-20b", timeout=10)
        assert response.status_code == 200
        assert response.json()["id"] == "openai/gpt-oss-20b"
