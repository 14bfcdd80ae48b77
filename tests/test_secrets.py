"""After a session that used an API key, the key is nowhere in the data folder."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rlhf_desktop import config
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import choose_provider
from rlhf_desktop.services.chat.service import TurnFailed
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.helpers import chat_service

KEY = "sk-live-TOPSECRET-0123456789abcdef"


def test_no_key_in_data_folder_logs_or_exports(data_home, monkeypatch, tmp_path):
    with AzureServer(api_key=KEY, deployment="dep", model="m") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        config.setup_logging("DEBUG")
        log = logging.getLogger("test")

        async def session() -> None:
            provider, reason = choose_provider()
            log.info("provider %s %r", reason, provider)
            repo = Repository.open()
            chat = chat_service(repo, RewardService(), provider)
            conv = repo.conversations.create("secret test")
            turn = await chat.send_messages(conv.id, [Message("user", "hello")],
                                            params=SamplingParams(n=3))
            LabelingService(repo).pick(turn, turn.candidates[1].id, reason="ok")
            for fault in ("auth", "server_error", "content_filter", "drop"):
                server.inject(fault, times=5)
                with pytest.raises(TurnFailed) as info:
                    await chat.send_messages(conv.id, [Message("user", "again")],
                                             params=SamplingParams(n=2))
                log.error("turn failed: %s / %r", info.value, info.value.error)
            try:
                raise RuntimeError(f"a crash whose text holds the key {KEY}")
            except RuntimeError:
                log.exception("unhandled")
            datasets.export_to_file(repo, "jsonl", data_home / "export.jsonl")
            datasets.export_to_file(repo, "csv", data_home / "export.csv")
            await provider.aclose()
            repo.close()

        asyncio.run(session())
    logging.shutdown()
    files = [p for p in data_home.rglob("*") if p.is_file()]
    assert any(p.name == "rlhf-desktop.log" for p in files)
    assert any("unhandled" in p.read_text(errors="ignore") for p in files if p.suffix == ".log")
    hits = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert hits == []
