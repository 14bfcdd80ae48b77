"""The built-in model in-process (llama.cpp through xllamacpp on SmolLM2-135M-Instruct)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import Delta, Done, ModelLoadError, ProviderError
from rlhf_desktop.providers.local import LocalProvider
from tests.providers.conftest import run

pytestmark = [pytest.mark.slow, pytest.mark.llama]
PROMPT = [Message("user", "Name a fruit.")]


@pytest.fixture(scope="module")
def local(gguf_path: Path) -> Iterator[LocalProvider]:
    """One provider (model loaded once) for the module."""
    provider = LocalProvider(gguf_path, n_threads=1, n_ctx=1024)
    yield provider
    run(provider.aclose())


async def collect(provider: LocalProvider, params: SamplingParams,
                  cancel: asyncio.Event | None = None,
                  cancel_after: int | None = None) -> tuple[list[Delta], dict[int, Done]]:
    deltas: list[Delta] = []
    done: dict[int, Done] = {}
    async for event in provider.stream(PROMPT, params, cancel):
        if isinstance(event, Delta):
            deltas.append(event)
            if cancel is not None and cancel_after is not None and len(deltas) == cancel_after:
                cancel.set()
        else:
            done[event.index] = event
    return deltas, done


def test_two_candidates_from_different_seeds(local: LocalProvider) -> None:
    params = SamplingParams(n=2, max_tokens=16, temperature=1.0, seed=11)
    deltas, done = run(collect(local, params))
    assert sorted(done) == [0, 1]
    texts = [done[i].candidate.text for i in range(2)]
    assert all(texts) and texts[0] != texts[1]
    for i in range(2):
        cand = done[i].candidate
        assert cand.text == "".join(d.text for d in deltas if d.index == i)
        assert cand.finish_reason in ("stop", "length") and cand.error is None
        assert cand.completion_tokens is not None and 0 < cand.completion_tokens <= 16
        assert cand.prompt_tokens is not None and cand.prompt_tokens > 5
        assert cand.ttft_s is not None and cand.latency_s is not None
        assert cand.ttft_s <= cand.latency_s
    # sequential: candidate 0 finished before candidate 1 started
    assert max(k for k, d in enumerate(deltas) if d.index == 0) < min(
        k for k, d in enumerate(deltas) if d.index == 1)
    # the same seed gives the same reply
    _, again = run(collect(local, SamplingParams(n=1, max_tokens=16, temperature=1.0, seed=12)))
    assert again[0].candidate.text == texts[1]


def test_cancel_keeps_partial_text(local: LocalProvider) -> None:
    cancel = asyncio.Event()
    deltas, done = run(collect(local, SamplingParams(n=3, max_tokens=64, seed=3),
                               cancel=cancel, cancel_after=3))
    assert sorted(done) == [0, 1, 2]
    assert all(d.candidate.finish_reason == "cancelled" for d in done.values())
    assert done[0].candidate.text == "".join(d.text for d in deltas if d.index == 0)
    assert done[0].candidate.text
    assert len(deltas) <= 8  # stopped within a few tokens (of 3 x 64)
    # the provider is still usable afterwards
    _, after = run(collect(local, SamplingParams(n=1, max_tokens=4, seed=1)))
    assert after[0].candidate.finish_reason in ("stop", "length")


def test_prompt_too_long_for_the_context(gguf_path: Path) -> None:
    provider = LocalProvider(gguf_path, n_ctx=64)
    long = [Message("user", "word " * 200)]

    async def go() -> None:
        try:
            await provider.generate(long, SamplingParams(n=2, max_tokens=8))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError, match="the built-in model takes 64") as info:
        run(go())
    assert [c.finish_reason for c in info.value.partial] == ["error", "error"]


def test_missing_or_invalid_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_text("hello")
    for path, pattern in ((tmp_path / "missing.gguf", "does not exist"),
                          (bad, "valid GGUF")):
        provider = LocalProvider(path)

        async def go(p: LocalProvider = provider) -> None:
            try:
                await p.generate(PROMPT, SamplingParams(n=1, max_tokens=4))
            finally:
                await p.aclose()

        with pytest.raises(ModelLoadError, match=pattern):
            run(go())


def test_importing_providers_loads_neither_openai_nor_llama() -> None:
    code = ("import sys, rlhf_desktop.providers, rlhf_desktop.providers.local, "
            "rlhf_desktop.providers.openai_client; "
            "print(sorted(m for m in ('openai', 'llama_cpp', 'xllamacpp', 'PySide6', 'qasync') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_count_tokens_uses_the_model_tokenizer(local: LocalProvider) -> None:
    assert local.count_tokens("") == 0
    # SmolLM2's own BPE: "Hello world, how are you?" is 7 tokens (no BOS)
    assert local.count_tokens("Hello world, how are you?") == 7
    assert local.count_tokens("Hello") == 1
    assert local.count_tokens(" ".join(["Hello"] * 50)) == 50  # "Hello" + 49 x " Hello"
    assert local.count_tokens("Hello ") == 2  # a trailing space is a token of its own
    assert local.count_tokens("Grüße, 東京!") > 3


def test_count_tokens_from_many_threads_while_a_reply_streams(local: LocalProvider) -> None:
    texts = [f"word {i} " * (i + 1) for i in range(24)]
    expected = {t: local.count_tokens(t) for t in texts[:2]}

    async def go() -> tuple[dict[int, str], list[int]]:
        stream = local.stream(PROMPT, SamplingParams(n=2, max_tokens=24, seed=5))
        counts: list[int] = []
        texts_by_index: dict[int, str] = {}
        started = False
        async for event in stream:
            if isinstance(event, Delta) and not started:
                started = True  # a reply is generating: count from 8 threads meanwhile
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    counts = await asyncio.gather(*(
                        asyncio.get_running_loop().run_in_executor(pool, local.count_tokens, t)
                        for t in texts))
            elif isinstance(event, Done):
                texts_by_index[event.index] = event.candidate.text
        return texts_by_index, counts

    replies, counts = run(go())
    assert sorted(replies) == [0, 1] and all(replies.values())
    assert counts[:2] == [expected[texts[0]], expected[texts[1]]]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_count_tokens_after_close_says_closed(gguf_path: Path) -> None:
    provider = LocalProvider(gguf_path, n_ctx=256)
    assert provider.count_tokens("Name a fruit.") == 4
    folder = Path(provider._load_sync()._unix or "").parent
    assert folder.is_dir()
    run(provider.aclose())
    assert not folder.exists()  # the socket folder goes with the engine
    with pytest.raises(ProviderError, match="closed"):
        provider.count_tokens("Something new.")


def test_engine_listens_only_on_a_private_unix_socket(local: LocalProvider) -> None:
    engine = local._load_sync()
    socket_path = Path(engine._unix or "")
    assert socket_path.is_socket()
    assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
    with pytest.raises(RuntimeError, match="HTTP 401"):  # the random key is required
        type(engine)(None, f"unix://{socket_path}", "wrong-key",
                     socket_path.parent).tokenize("hello")


def test_cancel_before_the_first_token_ends_every_reply(local: LocalProvider) -> None:
    cancel = asyncio.Event()
    cancel.set()
    deltas, done = run(collect(local, SamplingParams(n=4, max_tokens=64, seed=9), cancel))
    assert sorted(done) == [0, 1, 2, 3]
    assert all(d.candidate.finish_reason == "cancelled" for d in done.values())
    assert len(deltas) <= 2


def test_reply_ends_at_the_chat_template_end_of_turn(gguf_path: Path) -> None:
    provider = LocalProvider(gguf_path, n_ctx=1024)  # a fresh KV cache: greedy is repeatable

    async def go() -> tuple[list[Delta], dict[int, Done]]:
        try:
            return await collect(provider, SamplingParams(n=1, max_tokens=200,
                                                          temperature=0.0, seed=1))
        finally:
            await provider.aclose()

    _, done = run(go())
    cand = done[0].candidate
    assert cand.finish_reason == "stop"
    assert cand.completion_tokens is not None and cand.completion_tokens < 200
    assert "<|im_end|>" not in cand.text and "<|im_start|>" not in cand.text


def write_lora(path: Path, base: Path, scale: float, seed: int = 0) -> Path:
    """A real GGUF LoRA adapter (attn_q and attn_v of every layer, rank 4) for ``base``."""
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(base))
    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 4.0)
    rng = np.random.default_rng(seed)
    rank = 4
    for name, (n_in, n_out) in ((n, s) for n, s in shapes.items()
                                if n.endswith(("attn_q.weight", "attn_v.weight"))):
        writer.add_tensor(name + ".lora_a",
                          rng.standard_normal((rank, n_in)).astype(np.float32) * 0.1)
        writer.add_tensor(name + ".lora_b",
                          rng.standard_normal((n_out, rank)).astype(np.float32) * scale)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def greedy_reply(path: Path, lora: Path | None) -> str:
    provider = LocalProvider(path, n_ctx=256, lora_path=lora)

    async def go() -> str:
        try:
            cands = await provider.generate(PROMPT, SamplingParams(n=1, max_tokens=12,
                                                                  temperature=0.0, seed=1))
            return cands[0].text
        finally:
            await provider.aclose()

    return run(go())


def test_lora_adapter_is_applied_on_the_base(gguf_path: Path, tmp_path: Path) -> None:
    base = greedy_reply(gguf_path, None)
    (tmp_path / "v0001").mkdir()
    zero = write_lora(tmp_path / "v0001" / "adapter.gguf", gguf_path, scale=0.0)
    strong = write_lora(tmp_path / "v0002.gguf", gguf_path, scale=1.0)
    assert base
    assert greedy_reply(gguf_path, zero) == base  # a zero update leaves the model as it was
    assert greedy_reply(gguf_path, strong) != base  # a real update changes the reply
    provider = LocalProvider(gguf_path, lora_path=zero)
    assert provider.model.endswith("+v0001") and "chat model v1 (tuned)" in provider.describe()


def test_broken_or_missing_adapter_is_a_load_error(gguf_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    for lora, pattern in ((broken, "adapter broken.gguf"),
                          (tmp_path / "missing.gguf", "does not exist")):
        provider = LocalProvider(gguf_path, lora_path=lora)

        async def go(p: LocalProvider = provider) -> None:
            try:
                await p.generate(PROMPT, SamplingParams(n=1, max_tokens=4))
            finally:
                await p.aclose()

        with pytest.raises(ModelLoadError, match=pattern):
            run(go())


def test_a_cpu_without_avx2_gets_an_error_instead_of_sigill(
        gguf_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhf_desktop.providers import local as local_module

    flags = local_module.cpu_flags()
    assert flags is None or local_module.missing_cpu_flags(flags) == []  # this machine runs it
    old_cpu = {"fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "popcnt"}  # Sandy Bridge
    assert local_module.missing_cpu_flags(old_cpu) == ["avx2", "fma", "f16c", "bmi2"]
    assert local_module.missing_cpu_flags({"fp", "asimd"}) == []  # ARM: its own wheel
    monkeypatch.setattr(local_module, "cpu_flags", lambda: old_cpu)
    provider = LocalProvider(gguf_path)

    async def go() -> None:
        try:
            await provider.generate(PROMPT, SamplingParams(n=1, max_tokens=4))
        finally:
            await provider.aclose()

    with pytest.raises(ModelLoadError, match="lacks AVX2, FMA, F16C, BMI2"):
        run(go())


def test_engines_closed_right_after_they_start_never_hang(gguf_path: Path) -> None:
    """Closing an engine the moment it has loaded (here: after one token count) must not
    lose llama.cpp's terminate; a hang would hold the GIL, so it runs in a child process."""
    code = (
        "import asyncio, sys\n"
        "from rlhf_desktop.providers.local import LocalProvider\n"
        "for i in range(12):\n"
        "    p = LocalProvider(sys.argv[1], n_ctx=128)\n"
        "    assert p.count_tokens('Name a fruit.') == 4\n"
        "    asyncio.run(p.aclose())\n"
        "print('closed', i + 1)\n")
    done = subprocess.run([sys.executable, "-c", code, str(gguf_path)], capture_output=True,
                          text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed 12"


@pytest.mark.timeout(240)
def test_missing_or_broken_runtime_is_a_load_error(gguf_path: Path, tmp_path: Path) -> None:
    """No xllamacpp, or one whose library cannot load (e.g. no libgomp.so.1): an error that
    says so, never a crash."""
    broken = tmp_path / "broken" / "xllamacpp"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "raise ImportError('libgomp.so.1: cannot open shared object file')\n")
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "xllamacpp.py").write_text("raise ModuleNotFoundError(\"No module named 'x'\")\n")
    code = ("import asyncio, sys\n"
            "from rlhf_desktop.domain import Message, SamplingParams\n"
            "from rlhf_desktop.providers import ModelLoadError\n"
            "from rlhf_desktop.providers.local import LocalProvider\n"
            "p = LocalProvider(sys.argv[1])\n"
            "try:\n"
            "    asyncio.run(p.generate([Message('user', 'Hi')], SamplingParams(n=1)))\n"
            "except ModelLoadError as exc:\n"
            "    print(exc.message)\n")
    for folder, expected in ((broken.parent, "could not be loaded (libgomp.so.1"),
                             (missing, "xllamacpp is not installed")):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(folder), str(Path(__file__).resolve().parents[2])])}
        done = subprocess.run([sys.executable, "-c", code, str(gguf_path)], env=env,
                              capture_output=True, text=True, timeout=100, check=False)
        assert expected in done.stdout, done.stdout + done.stderr[-1500:]
