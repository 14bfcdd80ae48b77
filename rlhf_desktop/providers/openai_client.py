"""Azure OpenAI, OpenAI and OpenAI-compatible servers through the ``openai`` client.

One request asks for all N candidates with ``n`` and the choices are streamed by index.
When the server returns fewer choices than asked (llama.cpp's server and Ollama ignore
``n``), the missing candidates are requested as single-choice requests with distinct
seeds, one at a time (in parallel only with ``parallel_requests=True``), and later turns on
the same provider go straight to single-choice requests. Empty, unfinished and cut-short
replies are requested again; the rules are in :mod:`rlhf_desktop.providers._turn`.

Retries are the ``openai`` client's own (``max_retries`` and ``timeout`` from the
settings), with the app's few differences in :mod:`rlhf_desktop.providers.openai_retry`.
A 400 naming a parameter the server does not take (``stream_options``, ``max_tokens``,
``temperature``) is sent again without it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers._turn import (
    CANCEL,
    Concurrency,
    End,
    Request,
    TurnRequests,
    cancel_all,
    put_on_set,
)
from rlhf_desktop.providers.base import (
    BaseProvider,
    Delta,
    StreamEvent,
    build_messages,
)
from rlhf_desktop.providers.errors import InvalidRequestError, ProviderError
from rlhf_desktop.providers.openai_errors import Target, classify
from rlhf_desktop.providers.openai_retry import http_client, retry_unstarted
from rlhf_desktop.providers.openai_stream import Wire, complete_once, read_stream

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

NO_KEY = "not-needed"  # OpenAI-compatible servers without auth still need a non-empty key


def make_client(kind: str, settings: Settings, **kwargs: Any) -> Any:
    """``AsyncAzureOpenAI`` (kind ``azure``) or ``AsyncOpenAI`` with the settings' retries
    and explicit connect and read limits."""
    import openai

    timeout = openai.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    cls = openai.AsyncAzureOpenAI if kind == "azure" else openai.AsyncOpenAI
    return cls(timeout=timeout, max_retries=settings.max_retries,
               http_client=http_client(timeout), **kwargs)


class OpenAIChatProvider(BaseProvider):
    """Chat completions over the OpenAI protocol (Azure, OpenAI or a compatible server).

    Build it with :meth:`from_azure` or :meth:`from_openai` (OpenAI or a compatible
    server, by ``base_url``). ``streaming=False``
    uses non-streamed requests (each candidate then arrives as one ``Delta``).
    ``parallel_requests=True`` lets single-choice requests of one turn run concurrently
    (only for a server known to handle that; one that cuts a reply switches back).
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        target: Target,
        *,
        secret: str | None,
        streaming: bool = True,
        include_usage: bool = True,
        parallel_requests: bool = False,
    ) -> None:
        self._client = client
        self.target = target
        self.name = target.kind
        self.model = target.model
        self._secret = secret
        self.streaming = streaming
        self._include_usage = include_usage
        self._max_tokens_key = "max_tokens"
        self._send_sampling = True
        self._learned = Concurrency(parallel=parallel_requests)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_azure(
        cls,
        *,
        endpoint: str,
        api_key: str,
        deployment: str,
        api_version: str,
        settings: Settings | None = None,
        streaming: bool = True,
        parallel_requests: bool = False,
    ) -> OpenAIChatProvider:
        """Azure OpenAI: ``AsyncAzureOpenAI(azure_endpoint, api_key, api_version, deployment)``."""
        client = make_client("azure", settings or Settings(), azure_endpoint=endpoint,
                             api_key=api_key, api_version=api_version,
                             azure_deployment=deployment)
        target = Target(
            kind="azure", label="Azure OpenAI", url=endpoint, model=deployment,
            key_setting="AZURE_OPENAI_API_KEY", model_setting="AZURE_OPENAI_DEPLOYMENT_NAME",
            url_setting="AZURE_OPENAI_ENDPOINT", version_setting="AZURE_OPENAI_API_VERSION",
        )
        return cls(client, target, secret=api_key, streaming=streaming,
                   parallel_requests=parallel_requests)

    @classmethod
    def from_openai(
        cls,
        *,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        settings: Settings | None = None,
        streaming: bool = True,
        parallel_requests: bool = False,
    ) -> OpenAIChatProvider:
        """OpenAI itself, or any OpenAI-compatible server when ``base_url`` is given."""
        compatible = bool(base_url)
        url = (base_url or "https://api.openai.com/v1").rstrip("/")
        client = make_client("openai", settings or Settings(), api_key=api_key or NO_KEY,
                             base_url=url)
        target = Target(
            kind="compatible" if compatible else "openai",
            label=f"the OpenAI-compatible server at {url}" if compatible else "OpenAI",
            url=url, model=model, key_setting="OPENAI_API_KEY",
            model_setting="OPENAI_MODEL (or the openai_model setting)",
            url_setting="OPENAI_BASE_URL (or the openai_base_url setting)",
        )
        return cls(client, target, secret=api_key, streaming=streaming,
                   parallel_requests=parallel_requests)

    def describe(self) -> str:
        """E.g. ``Azure OpenAI: deployment 'gpt-4o' at https://x.openai.azure.com``."""
        where = "" if self.target.kind == "compatible" else f" at {self.target.url}"
        return f"{self.target.label}: {self.target.what}{where}"

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def list_models(self) -> list[str]:
        """The model ids the server offers (``GET /models``), sorted. Azure has no such
        list for a key (its deployments are configured): the configured deployment.
        Raises :class:`ProviderError` saying what went wrong."""
        if self.target.kind == "azure":
            return [self.model]
        try:
            page = await self._client.models.list()
            ids = {str(m.id) async for m in page if getattr(m, "id", None)}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc, self.target, self._secret, streamed=False) from None
        return sorted(ids)

    # ------------------------------------------------------------------ streaming

    @property
    def n_supported(self) -> bool | None:
        """None until known; False once the server returned fewer choices than asked."""
        return self._learned.n_supported

    @property
    def single_request_limit(self) -> int | None:
        """Requests of one turn allowed at once (1 unless the server handles concurrency)."""
        return self._learned.single_limit

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``params.n`` candidates (rules in :mod:`rlhf_desktop.providers.base`)."""
        seed_base = params.seed if params.seed is not None else random.randrange(1, 2**30)

        def runner(request: Request) -> Coroutine[Any, Any, None]:
            return self._run_request(request, wire)

        turn = TurnRequests(max(1, params.n), params.seed, seed_base, self._learned,
                            self.target.label, runner)
        queue = turn.queue
        wire = Wire(self._client, build_messages(messages, params), params, turn.tracker,
                    queue, self.target.label, self._secret)
        turn.start()
        watcher = asyncio.create_task(put_on_set(cancel, queue)) if cancel else None
        cancelled = False
        try:
            while turn.running:
                item = await queue.get()
                if item is CANCEL:
                    cancelled = True
                    break
                if isinstance(item, Delta):
                    yield item
                elif isinstance(item, End):
                    for event in turn.on_end(item.request):
                        yield event
            if cancelled:
                await cancel_all(turn.tasks)
                while not queue.empty():  # what arrived before the cancel
                    item = queue.get_nowait()
                    if isinstance(item, Delta):
                        yield item
                    elif isinstance(item, End):
                        for event in turn.on_end(item.request, final=True):
                            yield event
                for request in list(turn.running):
                    for event in turn.on_end(request, final=True, cancelled=True):
                        yield event
            for done in turn.finish(cancelled=cancelled):
                yield done
        finally:
            await cancel_all(turn.tasks | ({watcher} if watcher else set()))

    async def _run_request(self, request: Request, wire: Wire) -> None:
        """One request (the client retries it); always ends by queueing ``End(request)``."""
        unstarted_retries = 0
        try:
            while True:
                request.reset()
                kwargs = self._request_kwargs(request, wire)
                try:
                    if self.streaming and request.stream:
                        await read_stream(wire, request, kwargs)
                    else:
                        await complete_once(wire, request, kwargs)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = classify(exc, self.target, self._secret, streamed=request.got_text)
                    if self._adapt(error):
                        continue
                    if (retry_unstarted(exc, request)
                            and unstarted_retries < self._client.max_retries):
                        unstarted_retries += 1
                        log.info("%s stream failed before its first token (%s); sending it "
                                 "again (%d)", self.target.label, type(error).__name__,
                                 unstarted_retries)
                        await asyncio.sleep(0.5 * unstarted_retries)
                        continue
                    log.warning("%s request failed: %s", self.target.label,
                                type(error).__name__)
                    request.error = error
                    return
        except asyncio.CancelledError:
            request.cancelled = True
            raise
        finally:
            wire.queue.put_nowait(End(request))

    def _adapt(self, error: ProviderError) -> bool:
        """Adjust to a 400 that names a parameter this server or model does not take.

        Older Azure API versions reject ``stream_options``; OpenAI's reasoning models want
        ``max_completion_tokens`` and refuse sampling settings. True: send again at once.
        """
        if not isinstance(error, InvalidRequestError):
            return False
        message = error.message
        if self._include_usage and "stream_options" in message:
            self._include_usage = False
        elif self._max_tokens_key == "max_tokens" and "max_completion_tokens" in message:
            self._max_tokens_key = "max_completion_tokens"
        elif self._send_sampling and ("'temperature'" in message or "'top_p'" in message):
            self._send_sampling = False
        else:
            return False
        log.info("%s refused a parameter; sending again without it", self.target.label)
        return True

    def _request_kwargs(self, request: Request, wire: Wire) -> dict[str, Any]:
        params = wire.params
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": wire.messages,
            self._max_tokens_key: params.max_tokens,
        }
        if self._send_sampling:
            kwargs["temperature"] = params.temperature
            kwargs["top_p"] = params.top_p
        if len(request.indices) > 1:
            kwargs["n"] = len(request.indices)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self.streaming and request.stream and self._include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs
