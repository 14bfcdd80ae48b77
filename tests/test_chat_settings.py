"""Each chat's own system prompt and model: stored with the conversation, used by its turns,
listed from what the server offers (``GET /v1/models`` on a real loopback server).

The server below speaks the OpenAI protocol over a real socket: it lists three models, and
each reply names the model it was asked for and the system prompt it got, so the test sees
what the app really sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.providers.errors import ProviderError
from rlhf_desktop.services.chat.conversations import ChatSettings
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.repo import Repository
from tests.fakes import HashEmbedder

MODELS = ("alpha-7b", "beta-13b", "gamma-70b")
KEY = "sk-chat-settings-test-5e1f0b"


class _Handler(BaseHTTPRequestHandler):
    server: ModelsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._json(401, {"error": {"message": "Incorrect API key provided.",
                                       "code": "invalid_api_key"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path != "/v1/models":
            self._json(404, {"error": {"message": "not found"}})
            return
        if self.server.models_fail:
            self._json(503, {"error": {"message": "model registry is down"}})
            return
        self._json(200, {"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "test"} for name in MODELS]})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.bodies.append(body)
        model = body.get("model")
        if model not in MODELS:
            self._json(404, {"error": {"message": f"The model `{model}` does not exist",
                                       "code": "model_not_found"}})
            return
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        text = f"[{model}] system={system[0] if system else '-'}"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        n = int(body.get("n", 1))
        for i in range(n):
            for delta, finish in (({"role": "assistant", "content": ""}, None),
                                  ({"content": f"{text} #{i}"}, None), ({}, "stop")):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                         "model": model, "choices": [{"index": i, "delta": delta,
                                                      "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class ModelsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.models_fail = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelsServer]:
    httpd = ModelsServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", httpd.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_MODEL", MODELS[0])
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _session(**settings: Any) -> AppSession:
    values = {"candidates_per_turn": 2, "max_retries": 0, "system_prompt": "Be brief."}
    values.update(settings)
    config.save_settings(Settings(**values))
    return AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.timeout(90)
def test_a_chats_system_prompt_and_model_are_stored_and_used_by_its_turns(
        server: ModelsServer) -> None:
    async def scenario() -> tuple[int, int]:
        session = _session()
        await session.rebuild_provider()
        chat = session.chat
        assert chat is not None
        # A new chat starts from Settings' defaults.
        first = await chat.send(None, "Hello there")
        assert first.candidates[0].text == "[alpha-7b] system=Be brief. #0"
        cid = first.conversation_id
        assert session.conversations.chat_settings(cid) == ChatSettings("Be brief.", None)
        # Its own settings: the next turn uses them; another chat keeps the defaults.
        session.conversations.set_chat_settings(cid, ChatSettings("Answer in French.",
                                                                  "gamma-70b"))
        second = await chat.send(cid, "And now?")
        assert [c.text for c in second.candidates] == [
            "[gamma-70b] system=Answer in French. #0", "[gamma-70b] system=Answer in French. #1"]
        assert second.model == "gamma-70b"
        other = await chat.send(None, "A different chat")
        assert other.candidates[0].text.startswith("[alpha-7b] system=Be brief.")
        # Regenerating a reply of the turn asks the turn's own model again.
        again = await chat.regenerate(second, [1])
        assert again.turn.candidates[1].text == "[gamma-70b] system=Answer in French. #0"
        await session.aclose()
        return cid, other.conversation_id

    cid, other = _run(scenario())
    sent = [(b["model"], b["messages"][0]["content"]) for b in server.bodies]
    assert sent == [("alpha-7b", "Be brief."), ("gamma-70b", "Answer in French."),
                    ("alpha-7b", "Be brief."), ("gamma-70b", "Answer in French.")]
    # Stored with the conversation: a fresh connection (the next start) reads them back.
    repo = Repository.open()
    try:
        assert repo.conversations.settings([cid, other]) == {
            cid: ("Answer in French.", "gamma-70b"), other: ("Be brief.", None)}
    finally:
        repo.close()


@pytest.mark.timeout(90)
def test_settings_chosen_before_the_first_message_go_with_the_new_chat(
        server: ModelsServer) -> None:
    async def scenario() -> None:
        session = _session(system_prompt="")
        await session.rebuild_provider()
        assert session.chat is not None
        session.conversations.set_chat_settings(None, ChatSettings("You are a pirate.",
                                                                   "beta-13b"))
        turn = await session.chat.send(None, "Ahoy")
        assert turn.candidates[0].text == "[beta-13b] system=You are a pirate. #0"
        assert session.conversations.chat_settings(turn.conversation_id) == ChatSettings(
            "You are a pirate.", "beta-13b")
        # ... and only with that one: the next new chat starts from the defaults.
        plain = await session.chat.send(None, "Hi")
        assert plain.candidates[0].text == "[alpha-7b] system=- #0"
        await session.aclose()

    _run(scenario())


@pytest.mark.timeout(90)
def test_the_model_list_is_what_the_server_offers_and_a_failure_says_why(
        server: ModelsServer) -> None:
    async def scenario() -> None:
        session = _session()
        await session.rebuild_provider()
        assert await session.list_models() == list(MODELS)
        server.models_fail = True
        with pytest.raises(ProviderError) as failed:
            await session.list_models()
        assert "503" in str(failed.value) and KEY not in str(failed.value)
        await session.aclose()

    _run(scenario())


@pytest.mark.timeout(90)
def test_an_unknown_model_fails_the_turn_with_the_servers_reason_and_keeps_the_message(
        server: ModelsServer) -> None:
    from rlhf_desktop.services.chat.service import TurnFailed

    async def scenario() -> None:
        session = _session()
        await session.rebuild_provider()
        assert session.chat is not None
        session.conversations.set_chat_settings(None, ChatSettings(None, "delta-1b"))
        with pytest.raises(TurnFailed) as failed:
            await session.chat.send(None, "Is anyone there?")
        assert "delta-1b" in str(failed.value.error)
        turn = failed.value.turn
        stored = session.conversations.turns(turn.conversation_id)
        assert [t.prompt for t in stored] == ["Is anyone there?"]
        await session.aclose()

    _run(scenario())


@pytest.mark.timeout(90)
def test_a_chat_model_that_cannot_be_used_fails_the_turn_saying_why_and_keeps_the_message(
        ) -> None:
    """The built-in provider with a tuned version that is not in the data folder."""
    from rlhf_desktop.services.chat.service import TurnFailed

    async def scenario() -> None:
        session = _session(provider="local")
        await session.rebuild_provider()
        if session.chat is None:
            pytest.skip(f"no built-in model here: {session.provider_error}")
        base = session.provider_kind and session.chat.provider.model
        models = await session.list_models()
        assert models[0] == base  # the base model first, then any tuned versions
        session.conversations.set_chat_settings(None, ChatSettings(None, f"{base}+v0099"))
        with pytest.raises(TurnFailed) as failed:
            await session.chat.send(None, "Hello?")
        assert "v99" in str(failed.value.error)
        turn = failed.value.turn
        assert [c.error for c in turn.candidates] == [str(failed.value.error)] * 2
        stored = session.conversations.turns(turn.conversation_id)
        assert [t.prompt for t in stored] == ["Hello?"]
        assert [c.error for c in stored[0].candidates] == [str(failed.value.error)] * 2
        # Regenerating a reply of that turn keeps it and says why.
        result = await session.chat.regenerate(stored[0], [0])
        assert result.replaced == [] and "v99" in result.kept[0]
        await session.aclose()

    _run(scenario())
