"""A pick never stores a pair against a failed, cut, empty or Esc-stopped reply by default."""

from __future__ import annotations

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.repo import Repository, StorageError

pytestmark = pytest.mark.timeout(60)
WHOLE = "Gravity pulls things toward each other; the Earth pulls you down, so you stay put."


def mixed_turn(repo: Repository) -> Turn:
    """One whole reply per kind of reply a server or the user can leave behind."""
    conv = repo.conversations.create("test")
    cands = [
        Candidate(index=0, text=WHOLE, finish_reason="stop"),
        Candidate(index=1, text="Gravity is a", finish_reason="error",
                  error="Azure OpenAI cut this reply short 3 times"),  # failed, text kept
        Candidate(index=2, text="", finish_reason="error",
                  error="Azure OpenAI sent this reply empty 3 times"),
        Candidate(index=3, text="Things fall because", finish_reason="cancelled"),  # Esc
        Candidate(index=4, text="Gravity is what makes", finish_reason="content_filter",
                  error="the content filter stopped this reply"),
        Candidate(index=5, text="Mass bends space, and things roll along the bend.",
                  finish_reason="length"),
    ]
    turn = Turn(conversation_id=conv.id, messages=[Message("user", "Explain gravity")],
                provider="azure", model="gpt-test", params=SamplingParams(n=len(cands)),
                candidates=cands)
    return repo.conversations.save_turn(turn)


def test_failed_cut_empty_and_stopped_replies_are_not_rejected_by_default(data_home):
    repo = Repository.open()
    turn = mixed_turn(repo)
    ids = [c.id for c in turn.candidates]
    pick = LabelingService(repo).pick(turn, ids[0])
    pairs = repo.pairs.list_all()
    # only the other whole reply (cut at max tokens is still a whole reply of that length)
    assert [p.rejected_candidate_id for p in pairs] == [ids[5]]
    assert pick.pairs == len(pairs) == 1


def test_picking_against_a_failed_reply_is_explicit(data_home):
    repo = Repository.open()
    turn = mixed_turn(repo)
    ids = [c.id for c in turn.candidates]
    labeling = LabelingService(repo)
    pick = labeling.pick(turn, ids[0], against=[ids[1], ids[3]])
    assert {p.rejected for p in repo.pairs.list_all()} == {"Gravity is a", "Things fall because"}
    assert pick.pairs == 2
    with pytest.raises(StorageError, match="empty"):
        labeling.pick(turn, ids[0], against=[ids[2]])
    with pytest.raises(StorageError, match="not another reply"):
        labeling.pick(turn, ids[0], against=[ids[0]])
    assert repo.pairs.count() == 2  # the refused picks changed nothing


def test_a_pick_with_only_failed_siblings_says_why(data_home):
    repo = Repository.open()
    conv = repo.conversations.create("test")
    turn = repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "Explain gravity")],
        provider="azure", model="gpt-test", params=SamplingParams(n=3),
        candidates=[Candidate(index=0, text=WHOLE, finish_reason="stop"),
                    Candidate(index=1, text="", finish_reason="stop"),
                    Candidate(index=2, text="Grav", finish_reason="cancelled")]))
    with pytest.raises(StorageError) as info:
        repo.labels.pick(turn.id, turn.candidates[0].id)
    message = str(info.value)
    assert "reply 2 empty" in message and "reply 3 stopped before it finished" in message
    assert "Regenerate" in message
    assert repo.labels.count() == 0 and repo.pairs.count() == 0
