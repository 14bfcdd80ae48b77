"""Settings, .env handling and secret storage."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

from rlhf_desktop import config


def test_settings_round_trip_and_validation(data_home):
    s = config.load_settings()
    assert s.candidates_per_turn == 4
    s.candidates_per_turn = 6
    config.save_settings(s)
    assert config.load_settings().candidates_per_turn == 6
    raw = json.loads(config.settings_path().read_text())
    assert not any("key" in k.lower() for k in raw)  # settings never hold secrets


def test_unreadable_settings_are_kept_aside(data_home):
    config.settings_path().write_text("{not json")
    assert config.load_settings() == config.Settings()
    assert (data_home / "settings.json.bad").read_text() == "{not json"


def test_out_of_range_setting_is_a_clear_error(data_home):
    config.settings_path().write_text(json.dumps({"candidates_per_turn": 50}))
    settings = config.load_settings()  # kept aside, defaults used
    assert settings.candidates_per_turn == 4
    try:
        config.Settings.from_mapping({"candidates_per_turn": 50})
    except config.ConfigError as exc:
        assert "between 1 and 8" in str(exc)
    else:
        raise AssertionError("no error")


def test_malformed_env_file_does_not_crash(data_home, tmp_path, caplog):
    (tmp_path / "cwd" / ".env").write_bytes(
        b"AZURE_OPENAI_ENDPOINT=https://x.example\nthis line is junk\n\xff\xfe=bad\n"
        b"OPENAI_API_KEY='unterminated\n"
    )
    with caplog.at_level(logging.WARNING):
        value = config.lookup("AZURE_OPENAI_ENDPOINT")
    assert value in (None, "https://x.example")


def test_env_wins_over_dotenv_and_dotenv_over_secret_file(data_home, tmp_path, monkeypatch):
    config.store_secret("OPENAI_API_KEY", "from-file-1234")
    assert config.get_secret("OPENAI_API_KEY") == "from-file-1234"
    path = data_home / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (tmp_path / "cwd" / ".env").write_text("OPENAI_API_KEY=from-dotenv-1234\n")
    assert config.get_secret("OPENAI_API_KEY") == "from-file-1234"  # .env read once...
    config.reload_env_files()  # ...until the provider is chosen again
    assert config.get_secret("OPENAI_API_KEY") == "from-dotenv-1234"
    monkeypatch.setenv("OPENAI_API_KEY", "from-env-1234")
    assert config.get_secret("OPENAI_API_KEY") == "from-env-1234"


def test_redaction_covers_keys_stored_later(data_home):
    config.store_secret("AZURE_OPENAI_API_KEY", "late-secret-98765")
    assert config.redact("x late-secret-98765 y") == "x *** y"


def test_resource_and_model_paths():
    assert config.resource_path("icon.svg").exists()
    assert (config.default_embedder_dir() / "modules.json").exists()
    assert config.default_gguf_path().suffix == ".gguf"


def test_atomic_writes_of_one_file_from_several_threads_never_clash(tmp_path: Path) -> None:
    """The remote-job follower and a Cancel write remote_jobs.json from two threads: a temp
    name shared by the process let one thread rename the other's file away."""
    import threading

    from rlhf_desktop.config import atomic_write_bytes

    target = tmp_path / "jobs.json"
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for i in range(200):
                atomic_write_bytes(target, f"{k}:{i}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text().split(":")[0] in {"0", "1", "2", "3"}


def test_publish_numbered_takes_the_next_free_number_and_retries_when_taken(
        tmp_path: Path) -> None:
    from rlhf_desktop.config.files import publish_numbered

    (tmp_path / "v0001").mkdir()
    staging = tmp_path / ".new"
    staging.mkdir()
    seen: list[int] = []

    def prepare(number: int) -> None:
        seen.append(number)
        if number == 2:  # another process takes v0002 between the count and the rename
            (tmp_path / "v0002").mkdir()
            (tmp_path / "v0002" / "x").write_text("theirs")

    number, target = publish_numbered(tmp_path, staging, "v", prepare)
    assert (number, target.name, seen) == (3, "v0003", [2, 3])
    assert (tmp_path / "v0002" / "x").read_text() == "theirs" and not staging.exists()
