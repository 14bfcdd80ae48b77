"""The model page's services: learned style in words, versions with their
adoption verdict, rollback with a re-rank hook, and per-reply score explanations.

Real SQLite, the real reward model and the real MiniLM embedder (shared per module)."""

from __future__ import annotations

import asyncio
import math

import pytest

from rlhf_desktop.domain import Candidate, Message, ModelVersion, PreferencePair, Turn
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.ranking.models import ModelService, VersionError
from rlhf_desktop.services.ranking.retraining import Retrainer
from rlhf_desktop.services.ranking.rewards import RewardService, pinned_version
from rlhf_desktop.services.ranking.words import describe, preferences
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.helpers import chat_service, long_list, short
from tests.providers.conftest import AZURE_KEY, azure_provider

TOPICS = ["boil an egg", "learn to swim", "save money", "grow tomatoes", "fix a flat tyre",
          "write a cover letter", "sleep better", "start running", "bake bread", "clean a pan",
          "plan a trip", "learn chess", "brew coffee", "paint a wall", "tie a tie",
          "study for exams", "keep a plant alive", "make friends", "cook rice", "stay focused"]


def long_pairs(topics: list[str]) -> list[PreferencePair]:
    """A user who always picks the long list over the one-liner."""
    return [PreferencePair(prompt=(Message("user", f"How do I {t}?"),), chosen=long_list(t),
                           rejected=short(t)) for t in topics]


@pytest.fixture(scope="module")
def shared_embedder():
    from rlhf_desktop.reward.embedder import Embedder

    emb = Embedder()
    emb.load()
    return emb


def services(embedder) -> tuple[Repository, RewardService, ModelService, list[ModelVersion]]:
    repo = Repository.open()
    rewards = RewardService(embedder=embedder)
    rewards.load_current(repo)
    hooks = SessionHooks()
    fired: list[ModelVersion] = []
    hooks.model_did_train.append(fired.append)
    models = ModelService(repo, Retrainer(repo, rewards), rewards, hooks, LabelingService(repo))
    return repo, rewards, models, fired


def test_learned_says_in_words_that_this_user_likes_long_lists(shared_embedder):
    repo, rewards, models, _ = services(shared_embedder)
    assert models.learned().version is None  # untrained: nothing to say
    asks = ("How do I {}?", "Any tips to {}?", "What is the best way to {}?")
    repo.pairs.add([PreferencePair(prompt=(Message("user", ask.format(t)),),
                                   chosen=long_list(t), rejected=short(t))
                    for t in TOPICS for ask in asks])
    rewards.train_now()
    learned = models.learned()
    assert learned.version == 1 and learned.labels == 3 * len(TOPICS)
    by_name = {p.name: p for p in learned.preferences}
    assert "length" not in by_name, "the length block is merged into 'words'"
    words = by_name["words"]
    assert words.clear and words.effect > 0
    assert words.sentence.startswith("you prefer longer replies (2× the words: +")
    assert learned.preferences[0].clear  # found effects come first
    unclear = [p for p in learned.preferences if not p.clear]
    assert unclear and all("no clear effect" in p.sentence for p in unclear)
    repo.close()


def test_words_for_clear_noisy_and_negative_effects():
    assert (describe("words", 0.4, 0.1).sentence
            == "you prefer longer replies (2× the words: +0.40 logit)")
    assert (describe("words", -0.4, 0.1).sentence
            == "you prefer shorter replies (2× the words: −0.40 logit)")
    assert (describe("list_items", 0.3, 0.2).sentence
            == "lists: no clear effect (2× the list items: +0.30 logit ± 0.20)")
    assert not describe("refusal", 0.01, 0.001).clear  # sure, but too small to be taste
    assert (describe("unfinished", -1.0, 0.1).sentence
            == "you prefer replies that finish their sentences (a cut-off ending: −1.00 logit)")
    merged = preferences({"words": {"weight": 1.0, "std": 0.3}, "length": {"weight": 0.5,
                                                                           "std": 0.4}})
    assert len(merged) == 1
    assert math.isclose(merged[0].effect, 1.5 * math.log(2))
    assert math.isclose(merged[0].std, 0.5 * math.log(2))


def test_versions_rollback_fires_the_hook_and_ranks_with_the_old_version(shared_embedder):
    async def scenario():
        repo, rewards, models, fired = services(shared_embedder)
        repo.pairs.add(long_pairs(TOPICS[:6]))
        rewards.train_now()
        # the user's taste flips: one-liners win now
        repo.pairs.add([PreferencePair(prompt=(Message("user", f"How do I {t}?"),),
                                       chosen=short(t), rejected=long_list(t))
                        for t in TOPICS * 2])
        rewards.train_now()
        rows = models.version_rows()
        assert [r.version for r in rows] == [2, 1]
        assert rows[1].reason == "first model" and rows[1].adopted
        assert rows[0].adopted and "too few new pairs" not in rows[0].reason
        assert [r.in_use for r in rows] == [True, False]
        prompt, replies = "How do I cook pasta?", [long_list("cook pasta"), short("cook pasta")]
        v2_scores = rewards.rank(prompt, replies).scores
        assert v2_scores[1] > v2_scores[0]

        record = await models.use(1)
        assert record is not None and record.version == 1
        assert [v.version for v in fired] == [1]  # the window re-ranks on this hook
        assert pinned_version() == 1 and models.in_use == 1
        assert [r.in_use for r in models.version_rows()] == [False, True]
        v1 = rewards.rank(prompt, replies)
        assert v1.version == 1 and v1.scores[0] > v1.scores[1]
        # a fresh process (the next start) keeps the pinned version
        fresh = RewardService(embedder=shared_embedder)
        fresh.load_current(repo)
        assert fresh.version == 1

        with pytest.raises(VersionError, match="no model version v9"):
            await models.use(9)
        assert models.in_use == 1 and pinned_version() == 1  # nothing changed

        await models.use(None)
        assert models.in_use == 2 and pinned_version() is None
        assert [v.version for v in fired] == [1, 2]
        repo.close()

    asyncio.run(scenario())


def test_a_version_whose_file_is_gone_is_refused_and_nothing_changes(shared_embedder):
    async def scenario():
        import shutil

        repo, rewards, models, fired = services(shared_embedder)
        repo.pairs.add(long_pairs(TOPICS[:6]))
        first = rewards.train_now()
        repo.pairs.add(long_pairs(TOPICS[6:12]))
        rewards.train_now()
        shutil.rmtree(first.path)
        with pytest.raises(VersionError, match=r"v1 could not be used.*Still using v2"):
            await models.use(1)
        assert models.in_use == 2 and pinned_version() is None and fired == []
        repo.close()

    asyncio.run(scenario())


def test_explain_splits_each_score_and_says_how_sure_the_turn_is(shared_embedder):
    async def scenario():
        repo, rewards, _models, _ = services(shared_embedder)
        repo.pairs.add(long_pairs(TOPICS))
        rewards.train_now()
        with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="m") as server:
            chat = chat_service(repo, rewards, azure_provider(server))
            texts = [short("cook pasta"), long_list("cook pasta"), "Boil water, add pasta."]
            turn = Turn(conversation_id=0, messages=[Message("user", "How do I cook pasta?")],
                        provider="azure", model="m", params=chat.params(),
                        candidates=[Candidate(index=i, text=t) for i, t in enumerate(texts)])
            ranked = await chat.rank(turn)
            why = await chat.explain(turn)
        assert why.version == 1 and len(why.parts) == 3
        for cand, part in zip(ranked.candidates, why.parts, strict=True):
            assert math.isclose(part.style + part.content, part.score, abs_tol=1e-9)
            assert math.isclose(part.score, cand.score or 0.0, abs_tol=1e-6)
        assert math.isclose(sum(p.style_vs_mean for p in why.parts), 0.0, abs_tol=1e-9)
        long_part = why.parts[1]
        assert long_part.style_vs_mean > 0  # the long list wins on style ...
        assert long_part.drivers and long_part.drivers[0][1] > 0  # ... named by its driver
        scores = sorted((p.score for p in why.parts), reverse=True)
        expected = 1 / (1 + math.exp(-(scores[0] - scores[1]) / rewards.model.temperature))
        assert why.p_top is not None and math.isclose(why.p_top, expected)
        assert why.unsure == (why.p_top < why.unsure_below)
        tie = rewards.explain("How do I cook pasta?", [short("x"), short("x")])
        assert tie.p_top == pytest.approx(0.5) and tie.unsure  # identical replies: unsure
        repo.close()

    asyncio.run(scenario())
