"""The reward model on real MiniLM weights."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from rlhf_desktop.core.formats import parse_record
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.reward import signing
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.model import (
    MODEL_FILENAME,
    SIGNATURE_FILENAME,
    ModelFileError,
    TinyRewardModel,
)
from rlhf_desktop.reward.training import (
    TrainConfig,
    TrainingCancelled,
    TrainingError,
    pair_matrix,
    pairwise_accuracy,
    train,
)
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache
from tests.helpers import hh_rows


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    emb = Embedder()
    emb.load()
    return emb


def pair(prompt: str, chosen: str, rejected: str, label: int | None = None) -> PreferencePair:
    return PreferencePair(prompt=(Message("user", prompt),), chosen=chosen, rejected=rejected,
                          label_id=label)


TOY = [
    pair("How do I boil an egg?", "Put the egg in boiling water for about nine minutes.", "No."),
    pair("What is the capital of France?", "The capital of France is Paris.", "Dunno."),
    pair("Suggest a name for a cat", "How about Miso? It is short and friendly.", "Cat."),
    pair("How far is the moon?", "About 384,000 km from Earth on average.", "Far."),
    pair("Give me a synonym for happy", "Joyful, cheerful or content all work.", "Sad."),
    pair("How do plants eat?", "Plants make food from light, water and CO2.", "Whatever."),
]


def test_embeddings_are_unit_vectors_and_each_text_is_embedded_alone(embedder):
    vecs = embedder.embed(["hello world", "a reply " * 400, "hello world"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert np.array_equal(vecs[0], vecs[2])


def test_sqlite_cache_means_no_text_is_embedded_twice(data_home):
    cache = SqliteEmbeddingCache()
    first = Embedder(cache=cache)
    a = first.embed(["alpha", "beta"])
    assert first.encoded_texts == 2
    second = Embedder(cache=SqliteEmbeddingCache())  # a new process would start like this
    b = second.embed(["beta", "alpha"])
    assert second.encoded_texts == 0 and not second.loaded
    assert np.array_equal(a[::-1], b)


def test_untrained_model_scores_zero_and_keeps_order(embedder):
    model = TinyRewardModel(embedder=embedder)
    assert model.score("q", ["b", "a", "c"]) == [0.0, 0.0, 0.0]
    assert [i for i, _ in model.rank("q", ["b", "a", "c"])] == [0, 1, 2]


def test_training_learns_and_reports_cv_metrics(embedder):
    result = train(TOY * 3, TrainConfig(), embedder)
    m = result.metrics
    assert m["pairs"] == 18 and m["folds"] >= 2
    assert 0.0 <= m["cv_accuracy"] <= 1.0 and m["train_accuracy"] == 1.0
    model = result.model
    scores = model.score("How do I make tea?", ["Steep a tea bag in hot water for 3 minutes.",
                                                 "Nope."])
    assert scores[0] > scores[1]
    assert model.prob_preferred("q", "A helpful, complete answer.", "No.") > 0.5


@pytest.mark.parametrize("pairs", [
    [TOY[0]],                                        # one pair
    [TOY[0]] * 5,                                    # duplicates
    [pair("q", "same", "same")],                     # identical replies
    [pair("q", "same", "same"), pair("r", "x", "x")],
    [pair("q", "a", "b"), pair("q", "b", "a")],      # contradictory
])
def test_degenerate_pairs_never_crash(embedder, pairs):
    result = train(pairs, TrainConfig(), embedder)
    assert np.all(np.isfinite(result.model.weights))
    assert len(result.model.score("q", ["x", "y"])) == 2


def test_no_pairs_is_a_clear_error(embedder):
    with pytest.raises(TrainingError, match="no preference pairs"):
        train([], TrainConfig(), embedder)


def test_cancel_stops_training(embedder):
    flag = threading.Event()
    flag.set()
    with pytest.raises(TrainingCancelled):
        train(TOY, TrainConfig(), embedder, cancel=flag)


def test_progress_is_reported(embedder):
    seen: list[float] = []
    train(TOY * 2, TrainConfig(), embedder, progress=lambda f, _s: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_real_human_pairs_beat_chance(embedder, hh_data):
    pairs = [parse_record(r) for r in hh_rows(hh_data, 0, 400)]
    train_pairs, test_pairs = pairs[:250], pairs[250:]
    model = train(train_pairs, TrainConfig(), embedder).model
    diffs = pair_matrix(test_pairs, model.features, embedder).diffs
    accuracy = pairwise_accuracy(diffs @ model.weights)
    assert accuracy > 0.55, accuracy


# ---------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip(tmp_path, embedder):
    model = train(TOY, TrainConfig(), embedder).model
    model.version = 3
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / MODEL_FILENAME).exists()
    loaded = TinyRewardModel.load(tmp_path / "m", embedder=embedder)
    assert np.array_equal(loaded.weights, model.weights)
    assert loaded.version == 3 and loaded.features == model.features
    assert loaded.score("q", ["a", "b"]) == model.score("q", ["a", "b"])
    assert signing.key_path().stat().st_mode & 0o777 == 0o600


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickle_is_refused_without_running(tmp_path, embedder):
    folder = tmp_path / "m"
    train(TOY, TrainConfig(), embedder).model.save(folder)  # a key exists, like in real use
    marker = tmp_path / "pwned"
    (folder / MODEL_FILENAME).write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelFileError, match="signature does not match"):
        TinyRewardModel.load(folder)
    assert not marker.exists()
    (folder / SIGNATURE_FILENAME).unlink()
    with pytest.raises(ModelFileError, match="not signed"):
        TinyRewardModel.load(folder)
    assert not marker.exists()


def test_one_changed_byte_is_refused(tmp_path, embedder):
    folder = tmp_path / "m"
    train(TOY, TrainConfig(), embedder).model.save(folder)
    data = bytearray((folder / MODEL_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / MODEL_FILENAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="signature"):
        TinyRewardModel.load(folder)


def test_a_model_from_another_installation_is_refused(tmp_path, monkeypatch, embedder):
    folder = tmp_path / "m"
    train(TOY, TrainConfig(), embedder).model.save(folder)
    monkeypatch.setenv("RLHF_DESKTOP_HOME", str(tmp_path / "other-install"))
    with pytest.raises(ModelFileError, match="no signing key"):
        TinyRewardModel.load(folder)
    signing.load_key(create=True)
    with pytest.raises(ModelFileError, match="signature does not match"):
        TinyRewardModel.load(folder)


# ---------------------------------------------------------------------------- the seed's API


def _no_home(monkeypatch, tmp_path):
    """No RLHF_DESKTOP_HOME; the platform's user data folder points into tmp_path."""
    monkeypatch.delenv("RLHF_DESKTOP_HOME", raising=False)
    xdg = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    return xdg


def test_seed_api_loads_a_version_folder_without_rlhf_desktop_home(
        tmp_path, monkeypatch, embedder, data_home):
    from rlhf_desktop.reward import TinyRewardModel as SeedName  # the seed README's import

    model = train(TOY, TrainConfig(), embedder).model
    model.save(data_home / "models" / "v0002")  # as store_version() leaves it: no version inside
    default_home = _no_home(monkeypatch, tmp_path)
    rm = SeedName.load(str(data_home / "models" / "v0002"))
    assert rm.version == 2
    assert np.array_equal(rm.weights, model.weights)
    assert SeedName.load(data_home).version == 2  # a data folder loads its newest version
    assert not default_home.exists() and not (tmp_path / "user-home").exists()


def test_a_failed_load_writes_nothing_and_gives_the_right_advice(
        tmp_path, monkeypatch, embedder, data_home):
    folder = tmp_path / "copied-somewhere" / "v0002"
    train(TOY, TrainConfig(), embedder).model.save(folder)  # signed by data_home's key
    default_home = _no_home(monkeypatch, tmp_path)
    with pytest.raises(ModelFileError) as info:
        TinyRewardModel.load(folder)
    message = str(info.value)
    assert "no signing key" in message and "data folder that trained it" in message
    assert "rlhf-desktop train" not in message
    assert not default_home.exists() and not (tmp_path / "user-home").exists()


def test_model_file_is_read_as_plain_data_even_when_signed(tmp_path, embedder, data_home):
    folder = tmp_path / "m"
    train(TOY, TrainConfig(), embedder).model.save(folder)
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Exploit(str(marker)))
    key = signing.load_key(create=False)
    (folder / MODEL_FILENAME).write_bytes(data)
    (folder / SIGNATURE_FILENAME).write_text(signing.sign(data, key))  # a stolen key
    with pytest.raises(ModelFileError, match="not an rlhf-desktop reward model"):
        TinyRewardModel.load(folder)
    assert not marker.exists()


def test_a_model_saved_by_the_previous_code_still_loads(tmp_path, embedder, data_home):
    import io

    import joblib

    trained = train(TOY, TrainConfig(), embedder).model
    old_payload = {  # exactly what the previous save() wrote (no train_keys)
        "format": "rlhf-desktop/reward-model/1",
        "weights": [float(v) for v in trained.weights],
        "features": list(trained.features),
        "embedder_id": trained.embedder_id,
        "version": None,
        "metrics_json": "{}",
    }
    buffer = io.BytesIO()
    joblib.dump(old_payload, buffer)
    folder = data_home / "models" / "v0007"
    folder.mkdir(parents=True)
    (folder / MODEL_FILENAME).write_bytes(buffer.getvalue())
    key = signing.load_key(create=True)
    (folder / SIGNATURE_FILENAME).write_text(signing.sign(buffer.getvalue(), key))
    loaded = TinyRewardModel.load(folder, embedder=embedder)
    assert loaded.version == 7 and loaded.train_keys == frozenset()
    assert loaded.score("q", ["a", "b"]) == trained.score("q", ["a", "b"])


# ---------------------------------------------------------------------------- the style block


def test_style_features_read_the_form_of_a_reply():
    from rlhf_desktop.reward.style import STYLE_NAMES, style_row

    reply = ("# Plan\n\n**Steps**:\n\n- boil water\n- add the egg\n1. wait nine minutes\n\n"
             "```python\nprint('done')\n```\n\nWant more?")
    row = dict(zip(STYLE_NAMES, style_row(reply, "How do I boil an egg quickly?"), strict=True))
    assert row["headers"] == pytest.approx(np.log1p(1))
    assert row["list_items"] == pytest.approx(np.log1p(3))
    assert row["bold"] == pytest.approx(np.log1p(1))
    assert row["code_blocks"] == pytest.approx(np.log1p(1))
    assert row["questions"] == pytest.approx(np.log1p(1))
    assert row["refusal"] == 0.0 and row["apology"] == 0.0 and row["unfinished"] == 0.0
    assert 0.0 < row["prompt_overlap"] <= 1.0
    declined = dict(zip(STYLE_NAMES, style_row("I'm sorry, but I can't help with that and"),
                        strict=True))
    assert declined["refusal"] == 1.0 and declined["apology"] == 1.0
    assert declined["unfinished"] == 1.0 and declined["prompt_overlap"] == 0.0


LISTY = [pair(f"Give me tips about {topic}",
              f"- plan your {topic}\n- keep notes on {topic}\n- ask a friend",
              f"Plan your {topic}, keep notes on {topic} and ask a friend.")
         for topic in ("cooking", "running", "saving money", "studying", "gardening", "sleep",
                       "travel", "painting", "chess", "writing", "moving house", "yoga")]


@pytest.mark.parametrize("fit", ["joint", "staged"])
def test_a_style_preference_is_learned_and_explained(embedder, fit):
    model = train(LISTY, TrainConfig(fit=fit), embedder).model
    assert "style" in model.features
    weights = model.style_weights()
    assert weights["list_items"] > 0 and set(weights) >= {"words", "refusal", "bold"}
    summary = model.metrics["style"]  # Laplace standard deviations for the model page
    assert summary["list_items"]["weight"] == pytest.approx(weights["list_items"])
    assert summary["list_items"]["std"] > 0 and summary["list_items"]["description"] == "lists"
    assert summary["length"]["weight"] + summary["words"]["weight"] == pytest.approx(
        weights["words"])
    prompt = "Give me tips about baking"
    replies = ["- buy flour\n- preheat the oven\n- weigh things", "Buy flour, preheat the oven."]
    parts = model.explain(prompt, replies)
    scores = model.score(prompt, replies)
    for part, score in zip(parts, scores, strict=True):
        assert part["style"] + part["content"] == pytest.approx(score, abs=1e-6)
    assert parts[0]["style"] > parts[1]["style"] and scores[0] > scores[1]


def test_a_model_without_the_style_block_still_scores(embedder):
    old = train(TOY, TrainConfig(features=("reply", "prompt_x_reply", "length", "words")),
                embedder).model
    assert old.style_weights() == {} and len(old.explain("q", ["a", "b"])) == 2


# ------------------------------------------------------------ versions you can trust


def test_a_new_version_is_adopted_only_if_not_worse_on_pairs_the_current_never_saw(embedder):
    from rlhf_desktop.reward.style import STYLE_NAMES
    from rlhf_desktop.reward.training import TrainResult
    from rlhf_desktop.services.ranking.rewards import decide_adoption

    weights = np.zeros(len(STYLE_NAMES))
    weights[STYLE_NAMES.index("words")] = 1.0  # the model in use: longer wins
    current = TinyRewardModel(weights=weights, features=("style",), version=4,
                              embedder=embedder, train_keys=frozenset({"0" * 16}))
    pairs = [pair(f"question {i}", "a longer and more complete answer " * 2, "short")
             for i in range(12)]
    worse = TrainResult(model=current, oof_margins=-np.ones(12))
    verdict = decide_adoption(current, worse, pairs, embedder)
    assert not verdict["adopted"] and verdict["compared_pairs"] == 12
    assert verdict["current_accuracy"] == 1.0 and verdict["new_accuracy"] == 0.0
    assert "kept v4 in use" in verdict["reason"]
    assert decide_adoption(current, TrainResult(model=current, oof_margins=np.ones(12)),
                           pairs, embedder)["adopted"]
    few = decide_adoption(current, worse, pairs[:5], embedder)
    assert few["adopted"] and "too few new pairs" in few["reason"]


def test_versions_load_pinned_first_then_adopted_newest_first():
    from rlhf_desktop.domain import ModelVersion
    from rlhf_desktop.services.ranking.rewards import candidate_order

    def version(n: int, adopted: bool | None) -> ModelVersion:
        metrics = {} if adopted is None else {"adoption": {"adopted": adopted}}
        return ModelVersion(n, 0.0, f"/m/v{n}", metrics, 10, 2)

    versions = [version(1, None), version(2, True), version(3, False), version(4, True)]
    assert [v.version for v in candidate_order(versions, None)] == [4, 2, 1, 3]
    assert [v.version for v in candidate_order(versions, 3)] == [3, 4, 2, 1]
    assert [v.version for v in candidate_order(versions, 99)] == [4, 2, 1, 3]


# ------------------------------------------------------------ knowing when it is unsure


def test_fit_temperature_calibrates_overconfident_margins():
    from rlhf_desktop.reward.training import fit_temperature

    rng = np.random.default_rng(0)
    true = rng.normal(0.5, 1.0, 4000)  # P(right) = sigmoid(true margin)
    outcome = rng.random(4000) < 1 / (1 + np.exp(-true))
    observed = np.where(outcome, np.abs(true), -np.abs(true)) * np.sign(true)
    assert fit_temperature(observed * 5.0) == pytest.approx(5.0 * fit_temperature(observed),
                                                            rel=0.05)
    assert fit_temperature(np.ones(5)) == 1.0  # too few margins to fit


def test_turn_confidence_says_unsure_when_the_top_two_are_close(tmp_path, embedder):
    result = train(TOY * 4, TrainConfig(), embedder)
    model = result.model
    assert model.temperature == result.metrics["temperature"] > 0
    model.save(tmp_path / "m")
    assert TinyRewardModel.load(tmp_path / "m").temperature == model.temperature
    close = model.turn_confidence([1.0, 0.999, -3.0])
    assert close["unsure"] and 0.5 <= close["p_top"] < 0.6
    assert close["metric"] == "p-top-vs-second/1"
    far = model.turn_confidence([40.0 * model.temperature, 0.0])
    assert not far["unsure"] and far["p_top"] > 0.99
    assert TinyRewardModel().turn_confidence([1.0, 0.0])["unsure"]
