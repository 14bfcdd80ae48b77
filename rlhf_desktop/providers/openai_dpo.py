"""Whether a line is an OpenAI/Azure OpenAI preference (DPO) fine-tuning line, checked
against the openai SDK's message types before anything is sent
(:func:`rlhf_desktop.tune.remote.training_file`). The lines themselves are rendered by
:func:`rlhf_desktop.core.formats.export_record` (format ``openai-dpo``); this check lives
with the providers because it needs the openai SDK and pydantic, which core never imports.
"""

from __future__ import annotations

from typing import Any

from rlhf_desktop.core.formats import FormatError

__all__ = ["validate_openai_dpo"]


def validate_openai_dpo(record: Any) -> None:
    """Check one ``openai-dpo`` line against the openai SDK's message types.

    The SDK types the job (``DpoMethodParam``) and the chat messages
    (``ChatCompletionMessageParam``), not the file's line; the line's layout is the one in
    OpenAI's and Azure OpenAI's preference fine-tuning guides. Raises FormatError.
    """
    from pydantic import ValidationError

    try:
        _openai_dpo_adapter().validate_python(record, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FormatError(f"not an OpenAI DPO line: {where}: {first['msg']}") from exc
    for key in ("preferred_output", "non_preferred_output"):
        if len(record[key]) != 1:
            raise FormatError(f"not an OpenAI DPO line: '{key}' must hold one message")
    messages = record["input"]["messages"]
    if not messages or messages[-1].get("role") not in ("user", "tool"):
        raise FormatError("not an OpenAI DPO line: 'input.messages' must end with the user's "
                          "turn")


_ADAPTER: Any = None


def _openai_dpo_adapter() -> Any:
    global _ADAPTER
    if _ADAPTER is None:
        from typing import Required

        from openai.types.chat import (
            ChatCompletionAssistantMessageParam,
            ChatCompletionMessageParam,
            ChatCompletionToolParam,
        )
        from pydantic import ConfigDict, TypeAdapter, with_config
        from typing_extensions import TypedDict

        @with_config(ConfigDict(extra="forbid"))
        class DpoInput(TypedDict, total=False):
            messages: Required[list[ChatCompletionMessageParam]]
            tools: list[ChatCompletionToolParam]
            parallel_tool_calls: bool

        @with_config(ConfigDict(extra="forbid"))
        class DpoLine(TypedDict):
            input: DpoInput
            preferred_output: list[ChatCompletionAssistantMessageParam]
            non_preferred_output: list[ChatCompletionAssistantMessageParam]

        _ADAPTER = TypeAdapter(DpoLine)
    return _ADAPTER
