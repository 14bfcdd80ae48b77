"""The dataset card (README.md) beside an exported folder: Hugging Face front matter that
YAML, huggingface_hub and ``datasets.load_dataset(folder, config)`` read, counts that match
the data, sources (arena candidate sources included), the split, reward-model versions, the
licence, and never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rlhf_desktop import __version__
from rlhf_desktop.domain import (
    Candidate,
    Message,
    ModelVersion,
    PreferencePair,
    SamplingParams,
    Turn,
)
from rlhf_desktop.services.datasets.card import DEFAULT_LICENSE_NAME, check_license
from rlhf_desktop.services.datasets.export_folder import ExportError, export_folder
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.repo import Repository
from tests.helpers import record_version
from tests.test_label_export import ranked_repo

SECRET = "sk-card-SECRET-7f3a9c"


def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def arena_turn(repo: Repository) -> Turn:
    """A stored arena turn: two replies from each of two candidate sources."""
    conv = repo.conversations.create("arena")
    origins = [{"name": "gpt-4o-mini", "provider": "azure", "model": "gpt-4o-mini",
                "temperature": 0.7, "chat_model_version": 0},
               {"name": "built-in", "provider": "local", "model": "SmolLM2-135M",
                "temperature": None, "chat_model_version": 0}]
    turn = Turn(conversation_id=conv.id, messages=[Message("user", "Two sources?")],
                provider="arena", model="gpt-4o-mini vs built-in", params=SamplingParams(n=4),
                candidates=[Candidate(index=i, text=f"reply {i}", finish_reason="stop",
                                      origin=origins[i // 2]) for i in range(4)])
    return repo.conversations.save_turn(turn)


@pytest.mark.slow
def test_card_front_matter_parses_and_counts_match_the_data(tmp_path: Path) -> None:
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    repo = ranked_repo()
    repo.pairs.add([PreferencePair(prompt=(Message("user", "imported"),), chosen="c",
                                   rejected="r")])
    record_version(repo, ModelVersion(2, 1.0, "v2", {"cv_accuracy": 0.61}, 40, 12))
    done = export_folder(repo, tmp_path / "out")
    assert done.card == tmp_path / "out" / "README.md"
    meta, body = front_matter(done.card)
    ours = meta["rlhf_desktop"]
    assert ours["pairs"] == repo.pairs.count() == 2 + 3 + 3 + 5 + 1
    assert ours["pairs_by_kind"] == {"pick": 2, "edit": 3, "ranking": 8, "import": 1}
    assert ours["labels_by_kind"] == {"pick": 1, "tie": 1, "all_bad": 1, "edit": 1,
                                      "ranking": 2, "import": 1}
    assert ours["labeled_turns"] == 6 and ours["conversations"] == 6
    assert ours["app_version"] == __version__ and ours["test_share"] is None
    assert meta["license"] == "other" and meta["license_name"] == DEFAULT_LICENSE_NAME
    assert meta["size_categories"] == ["n<1K"] and "rlhf" in meta["tags"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == {"pairs", "trl", "trl-conversational", "hh", "openai-dpo",
                            "ranking", "labels"}  # csv: not loadable beside JSON
    assert configs["trl-conversational"].get("default") is True
    assert configs["trl"]["data_files"] == [{"split": "train", "path": "trl.jsonl"}]
    # the Hub's own reader agrees with YAML
    card = DatasetCard.load(done.card)
    assert card.data.to_dict()["configs"] == meta["configs"]
    # datasets finds a config's files through the card (every config: test_label_export)
    for name in (None, "ranking", "labels"):
        ds = load_dataset(str(tmp_path / "out"), name, split="train",
                          cache_dir=str(tmp_path / "hf-cache"))
        assert ds.num_rows == done.rows(name or "trl-conversational")
    assert "| `test` | `test-model` | 6 |" in body
    assert "| v2 | 5 | 61% | 40 |" in body  # five labels were ranked by v2 at display time
    assert "| tie | 1 | 0 |" in body and "| ranking | 2 | 8 |" in body
    assert "Not split" in body


def test_card_of_a_split_lists_both_sides_and_the_split(tmp_path: Path) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    from tests.helpers import make_turn

    for i in range(30):
        turn = make_turn(repo, ["x", "y"], prompt=f"c{i}")
        labeling.pick(turn, turn.candidates[0].id or 0)
    done = export_folder(repo, tmp_path / "out", ["trl"], labels=False, test_share=0.3, seed=5)
    meta, body = front_matter(done.card)
    files = meta["configs"][0]["data_files"]
    assert files == [{"split": "train", "path": "train.jsonl"},
                     {"split": "test", "path": "test.jsonl"}]
    assert meta["rlhf_desktop"]["test_share"] == 0.3 and meta["rlhf_desktop"]["split_seed"] == 5
    assert done.rows("trl", "train") + done.rows("trl", "test") == 30
    assert f"| trl | test | `test.jsonl` | {done.rows('trl', 'test')} |" in body
    assert "split by conversation (test share 0.3, seed 5)" in body


def test_card_names_the_arena_sources(tmp_path: Path) -> None:
    repo = Repository.open()
    turn = arena_turn(repo)
    LabelingService(repo).pick(turn, turn.candidates[3].id or 0)
    done = export_folder(repo, tmp_path / "out", ["ranking"])
    _, body = front_matter(done.card)
    assert "| `arena` | `gpt-4o-mini vs built-in` | 1 |" in body
    assert "| `gpt-4o-mini` | azure | gpt-4o-mini | 0.7 | 0 | 2 |" in body
    assert "| `built-in` | local | SmolLM2-135M | None | 0 | 2 |" in body
    assert "No labeled turn was ranked" in body
    from datasets import load_dataset  # the origins load as structs, nulls and all

    ds = load_dataset(str(tmp_path / "out"), "labels", split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    origins = ds[0]["metadata"]["origins"]
    assert [o["name"] for o in origins] == ["gpt-4o-mini"] * 2 + ["built-in"] * 2
    assert origins[3]["temperature"] is None and origins[0]["temperature"] == 0.7


def test_licence_option_and_bad_identifiers(tmp_path: Path) -> None:
    repo = ranked_repo()
    done = export_folder(repo, tmp_path / "out", ["trl"], license_id="CC-BY-4.0")
    meta, body = front_matter(done.card)
    assert meta["license"] == "cc-by-4.0" and "license_name" not in meta
    assert "`cc-by-4.0`." in body
    assert check_license(None) == "other"
    with pytest.raises(ExportError, match="not a licence identifier"):
        export_folder(repo, tmp_path / "never", ["trl"], license_id="my own licence")
    assert not (tmp_path / "never").exists()  # refused before anything was written


def test_card_never_holds_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhf_desktop import config

    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "-openai")
    (config.data_dir() / ".env").write_text(f"AZURE_OPENAI_API_KEY={SECRET}\n")
    repo = Repository.open()
    conv = repo.conversations.create("leak")
    # a deployment name that carries the key (a user's paste in the wrong field)
    turn = repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "hi")], provider="azure",
        model=f"gpt-4o?key={SECRET}", params=SamplingParams(n=2),
        candidates=[Candidate(index=i, text=f"r{i}") for i in range(2)]))
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    done = export_folder(repo, tmp_path / "out", license_id="mit")
    text = done.card.read_text(encoding="utf-8")
    assert SECRET not in text and "gpt-4o?key=***" in text
    front_matter(done.card)  # still YAML
