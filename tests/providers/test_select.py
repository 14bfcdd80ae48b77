"""Provider choice: explicit setting, Azure, OpenAI, compatible, built-in model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import ProviderConfigError, choose_provider, resolve
from rlhf_desktop.providers.local import LocalProvider
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer
from tests.providers.conftest import AZURE_KEY, OPENAI_KEY, run

AZURE_VARS = {
    "AZURE_OPENAI_ENDPOINT": "https://example-resource.openai.azure.com",
    "AZURE_OPENAI_API_KEY": AZURE_KEY,
    "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-4o-mini",
    "AZURE_OPENAI_API_VERSION": "2024-10-21",
}


@pytest.fixture
def has_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A GGUF path so the local choice never depends on the package being installed."""
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setattr("rlhf_desktop.config.default_gguf_path", lambda: fake)
    return fake


def close(provider: object) -> None:
    aclose = getattr(provider, "aclose", None)
    if aclose is not None:
        run(aclose())


def test_no_credentials_means_the_built_in_model(has_model: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rlhf_desktop.providers")
    provider, reason = choose_provider(Settings())
    assert isinstance(provider, LocalProvider) and provider.model_path == has_model
    assert "no Azure OpenAI or OpenAI credentials" in reason
    assert reason in caplog.text
    close(provider)


def test_azure_from_environment(monkeypatch: pytest.MonkeyPatch, has_model: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for key, value in AZURE_VARS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # Azure wins over OpenAI
    provider, reason = choose_provider(Settings())
    assert isinstance(provider, OpenAIChatProvider) and provider.name == "azure"
    assert provider.model == "gpt-4o-mini"
    assert "example-resource" in reason and "AZURE_OPENAI_API_KEY" in reason
    for text in (reason, caplog.text, repr(provider), provider.describe(), repr(resolve())):
        assert AZURE_KEY not in text and OPENAI_KEY not in text
    close(provider)


def test_azure_from_dotenv_file(has_model: Path) -> None:
    Path(".env").write_text("".join(f"{k}={v}\n" for k, v in AZURE_VARS.items()))
    choice = resolve(Settings())
    assert choice.kind == "azure" and choice.api_version == "2024-10-21"
    assert choice.endpoint == AZURE_VARS["AZURE_OPENAI_ENDPOINT"]


def test_azure_settings_fill_in_for_variables(monkeypatch: pytest.MonkeyPatch,
                                              has_model: Path) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    choice = resolve(Settings(azure_endpoint="https://x.openai.azure.com",
                              azure_deployment="dep"))
    assert (choice.kind, choice.model, choice.api_version) == ("azure", "dep",
                                                               "2024-08-01-preview")


def test_incomplete_azure_falls_through_and_says_why(monkeypatch: pytest.MonkeyPatch,
                                                     has_model: Path) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", AZURE_VARS["AZURE_OPENAI_ENDPOINT"])
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "gpt-4o-mini")
    choice = resolve(Settings())
    assert choice.kind == "local" and "AZURE_OPENAI_API_KEY missing" in choice.reason


def test_openai_and_compatible(monkeypatch: pytest.MonkeyPatch, has_model: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    choice = resolve(Settings())
    assert (choice.kind, choice.model, choice.endpoint) == ("openai", "gpt-4o-mini", "")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("OPENAI_MODEL", "llama3.2")
    choice = resolve(Settings())
    assert (choice.kind, choice.model) == ("compatible", "llama3.2")
    provider, _ = choose_provider(Settings())
    assert provider.name == "compatible" and "127.0.0.1:11434" in provider.describe()
    close(provider)


def test_base_url_alone_means_a_keyless_compatible_server(has_model: Path) -> None:
    choice = resolve(Settings(openai_base_url="http://localhost:1234/v1"))
    assert choice.kind == "compatible" and not choice.has_key


@pytest.mark.parametrize(("explicit", "missing"), [
    ("azure", "AZURE_OPENAI_API_KEY"),
    ("openai", "OPENAI_API_KEY"),
    ("compatible", "OPENAI_BASE_URL"),
])
def test_explicit_choice_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch,
                                                    has_model: Path, explicit: str,
                                                    missing: str) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", AZURE_VARS["AZURE_OPENAI_ENDPOINT"])
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "gpt-4o-mini")
    with pytest.raises(ProviderConfigError, match=missing):
        resolve(Settings(provider=explicit))
    monkeypatch.setenv("RLHF_DESKTOP_PROVIDER", explicit)
    with pytest.raises(ProviderConfigError, match=missing):
        resolve(Settings())


def test_explicit_local_wins_over_credentials(monkeypatch: pytest.MonkeyPatch,
                                              has_model: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("RLHF_DESKTOP_PROVIDER", "local")
    choice = resolve(Settings())
    assert choice.kind == "local" and "explicit" in choice.reason


def test_bad_values(monkeypatch: pytest.MonkeyPatch, has_model: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("RLHF_DESKTOP_PROVIDER", "bard")
    with pytest.raises(ProviderConfigError, match="RLHF_DESKTOP_PROVIDER"):
        resolve(Settings())
    monkeypatch.delenv("RLHF_DESKTOP_PROVIDER")
    with pytest.raises(ProviderConfigError, match="gguf_path"):
        resolve(Settings(gguf_path=str(tmp_path / "nope.gguf")))


def test_missing_built_in_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhf_desktop import config

    def missing() -> Path:
        raise config.ConfigError("The built-in model is not installed. Run `make run`.")

    monkeypatch.setattr("rlhf_desktop.config.default_gguf_path", missing)
    with pytest.raises(ProviderConfigError, match="make run"):
        resolve(Settings())


def test_chosen_azure_provider_talks_to_the_server(monkeypatch: pytest.MonkeyPatch,
                                                   azure_server: AzureServer,
                                                   has_model: Path) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", azure_server.endpoint)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "gpt-test")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2024-10-21")
    provider, _ = choose_provider(Settings())

    async def go() -> list[str]:
        try:
            cands = await provider.generate([Message("user", "hi")], SamplingParams(n=4))
        finally:
            await provider.aclose()
        return [c.text for c in cands]

    texts = run(go())
    assert len(texts) == 4 and len(set(texts)) == 4
