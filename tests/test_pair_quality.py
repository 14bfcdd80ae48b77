"""Pairs the user never meant, in a real SQLite file: two replies that are the same reply
are a tie (no pair, no win on the leaderboard, never exported or imported); a reply cut at
max tokens stays the rejected side but is flagged ``rejected_cut`` and left out of reward
training by default; failed and empty replies are never scored or ranked; after "all bad"
no reply is carried into the next turn unless the user picks one."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlhf_desktop.core.formats import FormatError, parse_record
from rlhf_desktop.core.leaderboard import turn_battles
from rlhf_desktop.core.pick_rules import ranked, same_reply
from rlhf_desktop.domain import Candidate, Message, PreferencePair, SamplingParams, Turn
from rlhf_desktop.reward.training import TrainConfig, TrainingError, training_pairs
from rlhf_desktop.services.chat.service import history
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.pairs import NOTE_CUT, NOTE_SAME
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.azure_server import AzureServer
from tests.fakes import FakeProvider, HashEmbedder
from tests.helpers import chat_service
from tests.providers.conftest import AZURE_KEY, azure_provider, fast_settings

pytestmark = pytest.mark.timeout(120)


def stored_turn(repo: Repository, cands: list[Candidate], prompt: str = "What is 12 times 12?",
                origins: list[str] | None = None) -> Turn:
    conv = repo.conversations.create("test")
    for i, cand in enumerate(cands):
        cand.index = i
        cand.finish_reason = cand.finish_reason or "stop"
        if origins is not None:
            cand.origin = {"name": origins[i], "provider": "azure", "model": origins[i],
                           "temperature": 0.8, "chat_model_version": 0}
    return repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", prompt)], provider="azure",
        model="gpt-test", params=SamplingParams(n=len(cands)), candidates=cands))


def test_the_same_reply_spaced_cased_or_with_a_full_stop_is_the_same_and_a_word_is_not() -> None:
    assert same_reply("12 times 12 equals 144.", "12 times 12 equals 144.")
    assert same_reply("12 times 12 equals 144.", "  12 times 12\n equals 144 ")
    assert same_reply("Canberra", "canberra.")
    assert not same_reply("12 times 12 equals 144.", "12 times 12 equals 144, of course.")
    assert not same_reply("Is it 144?", "It is 144.")


def test_a_pick_stores_no_pair_against_an_identical_reply(data_home: Path, tmp_path: Path
                                                          ) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, [Candidate(0, "12 times 12 equals 144."),
                              Candidate(0, "12 times 12 equals 144."),
                              Candidate(0, "It is 124.")])
    a, _same, other = (c.id for c in turn.candidates)
    assert a is not None
    pick = LabelingService(repo).pick(turn, a)
    assert pick.kind == "pick" and pick.pairs == 1
    assert [(p.chosen, p.rejected) for p in repo.pairs.list_all()] == [
        ("12 times 12 equals 144.", "It is 124.")]
    assert [p.rejected_candidate_id for p in repo.pairs.list_all()] == [other]
    out = tmp_path / "trl.jsonl"
    assert datasets.export_to_file(repo, "trl", out) == 1
    assert all(r["chosen"] != r["rejected"] for r in map(json.loads, out.read_text()
                                                         .splitlines()))


def test_a_pick_among_four_identical_replies_is_a_tie_with_no_pairs(data_home: Path) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, [Candidate(0, t) for t in
                              ("Canberra", "Canberra.", "canberra", " Canberra ")])
    first = turn.candidates[0].id
    assert first is not None
    pick = LabelingService(repo).pick(turn, first)
    assert pick.kind == "tie" and pick.pairs == 0
    assert repo.pairs.count() == 0 and repo.labels.kinds() == {"tie": 1}
    assert turn.chosen_candidate_id == first  # the conversation continues with the pick
    with pytest.raises(StorageError, match="same reply"):
        repo.labels.pick(turn.id or 0, first)  # storage alone never writes such a pair
    with pytest.raises(StorageError, match="same reply"):
        repo.labels.pick(turn.id or 0, first, against=[turn.candidates[1].id or 0])


def test_a_ranking_makes_no_pair_between_identical_replies(data_home: Path) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, [Candidate(0, "Paris is the capital of France."),
                              Candidate(0, "paris is the capital of france"),
                              Candidate(0, "Lyon.")])
    order = [c.id or 0 for c in turn.candidates]
    LabelingService(repo).rank(turn, order)
    pairs = [(p.chosen, p.rejected) for p in repo.pairs.list_all()]
    assert pairs == [("Paris is the capital of France.", "Lyon."),
                     ("paris is the capital of france", "Lyon.")]
    twins = stored_turn(repo, [Candidate(0, "Yes."), Candidate(0, "yes")])
    with pytest.raises(StorageError, match="tie"):
        LabelingService(repo).rank(twins, [c.id or 0 for c in twins.candidates])


def test_an_identical_pair_stored_earlier_is_never_exported_and_the_view_says_so(
        data_home: Path, tmp_path: Path) -> None:
    repo = Repository.open()
    prompt = (Message("user", "What is 12 times 12?"),)
    repo.pairs.add([PreferencePair(prompt, "12 times 12 equals 144.", "12 times 12 equals 144."),
                    PreferencePair(prompt, "144", "124")])
    assert [p.chosen for p in repo.pairs.list_all()] == ["144"]
    for fmt in ("jsonl", "trl", "openai-dpo"):
        out = tmp_path / f"{fmt}.jsonl"
        assert datasets.export_to_file(repo, fmt, out) == 1
        assert "12 times 12 equals 144." not in out.read_text()
    notes = {row[2]: row[8] for row in repo.pairs.rows(None, 10)}
    assert notes == {"12 times 12 equals 144.": NOTE_SAME, "144": ""}


def test_an_identical_pair_is_refused_on_import() -> None:
    with pytest.raises(FormatError, match="same reply"):
        parse_record({"prompt": "2+2?", "chosen": "4.", "rejected": " 4"})


def test_identical_replies_of_two_sources_battle_to_a_tie_never_a_win(data_home: Path) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, [Candidate(0, "12 times 12 equals 144."),
                              Candidate(0, "12 times 12 equals 144."),
                              Candidate(0, "It is 124.")],
                       origins=["tuned v1", "base", "base"])
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    (arena,) = repo.arena.turns()
    battles = sorted((b.a, b.b, b.score) for b in turn_battles(arena))
    assert battles == [("tuned v1", "base", 0.5), ("tuned v1", "base", 1.0)]
    # a pair stored before the rule (same reply on both sides) is a tie too
    with repo.transaction() as c:
        c.execute("INSERT INTO pairs (label_id, prompt_json, chosen, rejected,"
                  " chosen_candidate_id, rejected_candidate_id, source, created_at, weight)"
                  " VALUES (?, '[]', 'x', 'x', ?, ?, 'pick', 0, 1)",
                  (arena.label_id, turn.candidates[0].id, turn.candidates[1].id))
    (arena,) = repo.arena.turns()
    assert sorted((b.a, b.b, b.score) for b in turn_battles(arena)) == battles  # not 2 wins


def cut_turn(repo: Repository) -> Turn:
    return stored_turn(repo, [
        Candidate(0, "Gravity pulls masses together."),
        Candidate(0, "Gravity is the force by which a planet or other body draws objects "
                  "toward its centre. It keeps the", finish_reason="length"),
        Candidate(0, "Things fall down.")], prompt="Explain gravity")


def test_a_pair_against_a_cut_reply_is_kept_and_flagged_in_metadata_and_exports(
        data_home: Path, tmp_path: Path) -> None:
    repo = Repository.open()
    turn = cut_turn(repo)
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    flags = {p.rejected: (p.metadata or {}).get("rejected_cut") for p in repo.pairs.stream()}
    assert flags == {turn.candidates[1].text: True, "Things fall down.": False}
    cut_id = next(p.id for p in repo.pairs.list_all() if p.rejected == turn.candidates[1].text)
    assert repo.pairs.cut_ids() == {cut_id}
    out = tmp_path / "pairs.jsonl"
    datasets.export_to_file(repo, "jsonl", out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["metadata"]["rejected_cut"] for r in lines) == [False, True]
    notes = {row[3]: row[8] for row in repo.pairs.rows(None, 10)}
    assert notes == {turn.candidates[1].text: NOTE_CUT, "Things fall down.": ""}


def test_reward_training_leaves_cut_pairs_out_by_default(data_home: Path) -> None:
    repo = Repository.open()
    turn = cut_turn(repo)
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    pairs, cut = repo.pairs.list_all(), repo.pairs.cut_ids()
    used, left = training_pairs(pairs, cut)
    assert [p.rejected for p in used] == ["Things fall down."] and left == 1
    used, left = training_pairs(pairs, cut, TrainConfig(use_cut_pairs=True))
    assert len(used) == 2 and left == 0
    with pytest.raises(TrainingError, match="cut at max tokens"):
        training_pairs([p for p in pairs if p.id in cut], cut)
    record = RewardService(embedder=HashEmbedder()).train_now()  # type: ignore[arg-type]
    assert record.pairs == 1


def failed_turn(repo: Repository) -> Turn:
    """A turn where two replies failed (server error, empty), one whole, one stopped."""
    return stored_turn(repo, [
        Candidate(0, "", finish_reason="error", error="server error (500)"),
        Candidate(0, "", finish_reason="error", error="server error (500)"),
        Candidate(0, "Photosynthesis turns light, water and carbon dioxide into sugar."),
        Candidate(0, "Photosynthesis is", finish_reason="cancelled")], prompt="Photosynthesis?")


def trained_rewards(repo: Repository) -> RewardService:
    """A reward model trained on picks of the shortest reply (so an empty text would score
    highest of all)."""
    for i in range(12):
        turn = stored_turn(repo, [Candidate(0, f"No {i}."),
                                  Candidate(0, f"Well, there are many ways to see question {i} "
                                            "and I will go through each of them slowly.")])
        LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    rewards.train_now()
    return rewards


def test_failed_and_empty_replies_are_never_scored_and_sort_after_whole_ones(
        data_home: Path) -> None:
    repo = Repository.open()
    rewards = trained_rewards(repo)
    turn = failed_turn(repo)
    chat = chat_service(repo, rewards, FakeProvider([]))
    asyncio.run(chat.rank(turn))
    assert [c.score is None for c in turn.candidates] == [True, True, False, True]
    assert ranked(turn.candidates)[0].index == 2
    stored = repo.conversations.get_turn(turn.id or 0)
    assert [c.score is None for c in stored.candidates] == [True, True, False, True]
    why = asyncio.run(chat.explain(turn))
    assert len(why.parts) == 4 and why.p_top is None  # one whole reply: nothing to compare
    # a turn scored before this rule: the stored scores of failures never put them first
    for cand in turn.candidates:
        cand.score = 0.5 if cand.index != 2 else -3.0
    assert next(c.index for c in ranked(turn.candidates)) == 2


def test_a_reply_that_failed_at_the_server_is_never_ranked_above_a_whole_one(
        data_home: Path) -> None:
    """Over a real socket: the Azure-protocol server ends reply 2 with an error after a word
    ("Reply 1:"); a model that learned "shorter wins" would put that stub first."""
    repo = Repository.open()
    rewards = trained_rewards(repo)
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=10) as server:
        provider = azure_provider(server, settings=fast_settings(max_retries=0))
        chat = chat_service(repo, rewards, provider)
        conv = repo.conversations.create("t")
        server.inject("choice_error", times=1, choice=1)

        async def scenario() -> Turn:
            turn = await chat.send_messages(conv.id, [Message("user", "Tell me a story")],
                                            params=SamplingParams(n=4, max_tokens=50))
            await provider.aclose()
            return turn

        turn = asyncio.run(scenario())
    failed = turn.candidates[1]
    assert failed.error and failed.score is None
    assert all(c.score is not None for c in turn.candidates if c is not failed)
    assert ranked(turn.candidates)[-1] is failed
    assert repo.conversations.get_turn(turn.id or 0).candidates[1].score is None


def test_a_reply_cut_at_max_tokens_ranks_below_every_finished_reply_whatever_its_score(
        data_home: Path) -> None:
    """Over a real socket: the Azure-protocol server cuts its longest reply at max tokens.
    The reward model scores text and cannot see the cut, so on score alone the cut reply
    could come first; in rank order (the cards, the model's top, best-of-N) it is last."""
    from rlhf_desktop.core.pick_rules import model_top
    from rlhf_desktop.services.turns.order import display_order

    repo = Repository.open()
    rewards = trained_rewards(repo)
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=10) as server:
        provider = azure_provider(server, settings=fast_settings(max_retries=0))
        chat = chat_service(repo, rewards, provider)
        conv = repo.conversations.create("t")

        async def scenario() -> Turn:
            turn = await chat.send_messages(conv.id, [Message("user", "Tell me a story")],
                                            params=SamplingParams(n=4, max_tokens=12))
            await provider.aclose()
            return turn

        turn = asyncio.run(scenario())
    cut = [c for c in turn.candidates if c.finish_reason == "length"]
    assert [c.index for c in cut] == [3]  # replies of 10, 11, 12 tokens end; 13 is cut
    assert all(c.score is not None for c in turn.candidates)  # a cut reply is still scored
    cut[0].score = max(c.score or 0.0 for c in turn.candidates) + 1.0
    assert ranked(turn.candidates)[-1] is cut[0]
    assert display_order(turn)[-1] == 3
    assert model_top(turn) != cut[0].id
    for cand in turn.candidates:  # among cut replies the score still decides
        cand.finish_reason = "length"
    assert ranked(turn.candidates)[0] is cut[0]


def test_after_all_bad_no_reply_enters_the_history_unless_one_is_picked(data_home: Path
                                                                         ) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, [Candidate(0, "Blorp fizz wug."), Candidate(0, "Qwzx zzz.")],
                       prompt="What is the capital of Australia?")
    for cand, score in zip(turn.candidates, (0.9, 0.1), strict=True):
        cand.score, cand.model_version = score, 1
    repo.conversations.set_scores([(c.id, c.score, c.model_version) for c in turn.candidates])
    labeling = LabelingService(repo)
    turns = repo.conversations.list_turns(turn.conversation_id)
    assert history(turns)[-1].content == "Blorp fizz wug."
    labeling.all_bad(turn)
    sent = history(repo.conversations.list_turns(turn.conversation_id))
    assert [m.role for m in sent] == ["user"]
    labeling.pick(turn, turn.candidates[1].id or 0)  # the user keeps one after all
    assert history(repo.conversations.list_turns(turn.conversation_id))[-1].content == "Qwzx zzz."


def test_the_retrainer_follows_the_setting_for_cut_pairs(data_home: Path) -> None:
    """Settings.train_on_cut_pairs: off, a run leaves the pair against a cut reply out; on,
    it trains on it too."""
    from rlhf_desktop.services.ranking.retraining import Retrainer

    repo = Repository.open()
    turn = cut_turn(repo)
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    trained = []

    async def train(use_cut: bool) -> None:
        retrainer = Retrainer(repo, rewards, every=1, on_trained=trained.append,
                              use_cut_pairs=use_cut)
        retrainer.request()
        while retrainer.running:
            await asyncio.sleep(0.05)

    asyncio.run(train(False))
    asyncio.run(train(True))
    assert [v.pairs for v in trained] == [1, 2]


def test_a_reply_cut_below_max_tokens_was_cut_by_the_full_context() -> None:
    """The rule a card reads: cut (finish reason ``length``) before max tokens means the
    context filled; at max tokens, or without a known limit, it is the usual cut."""
    from rlhf_desktop.core.pick_rules import cut_by_context

    cut = Candidate(index=0, text="1, 2, 3", finish_reason="length", completion_tokens=100)
    assert cut_by_context(cut, 256)
    assert not cut_by_context(replace(cut, completion_tokens=256), 256)
    assert not cut_by_context(cut, None)  # a remote server: its count is not per reply
    assert not cut_by_context(replace(cut, finish_reason="stop"), 256)
    assert not cut_by_context(replace(cut, completion_tokens=None), 256)


def test_the_train_command_follows_the_setting_for_cut_pairs(
        data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``rlhf-desktop train`` reads the window's switch too: its error names it, so ticking
    it must change what the command trains on."""
    from rlhf_desktop import config
    from rlhf_desktop.cli import main
    from rlhf_desktop.config import Settings

    repo = Repository.open()
    turn = cut_turn(repo)
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    repo.close()
    pairs = []
    for use_cut in (False, True):
        config.save_settings(Settings(train_on_cut_pairs=use_cut))
        assert main(["train", "--json"]) == 0
        pairs.append(json.loads(capsys.readouterr().out)["pairs"])
    assert pairs == [1, 2]
