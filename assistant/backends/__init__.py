"""Backend registry: `provider:model` strings to embedders and chat models, imported lazily."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from .cache import CACHE

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import ChatModel, Embedder

EMBEDDER_PROVIDERS = ("local", "openai", "openai-compatible", "fake")
LLM_PROVIDERS = ("local", "openai", "openai-compatible", "fake")


def split_spec(spec: str) -> tuple[str, str]:
    """Split 'provider:model' into its parts."""
    provider, sep, model = spec.partition(":")
    if not sep or not provider:
        raise ConfigError(f"'{spec}' is not a provider:model string (e.g. 'local:qwen2.5-coder-1.5b')")
    return provider, model


def get_embedder(settings: "Settings") -> "Embedder":
    """Build the embedder named by `settings.index.embedder`."""
    provider, model = split_spec(settings.index.embedder)
    factories: dict[str, Callable[[], "Embedder"]] = {}

    def local() -> "Embedder":
        from .embedders import LocalEmbedder
        return LocalEmbedder(model, settings)

    def openai() -> "Embedder":
        from .embedders import OpenAIEmbedder
        return OpenAIEmbedder(model, settings, compatible=provider == "openai-compatible")

    def fake() -> "Embedder":
        from .fakes import FakeEmbedder
        return FakeEmbedder(model)

    factories = {"local": local, "openai": openai, "openai-compatible": openai, "fake": fake}
    if provider not in factories:
        raise ConfigError(f"unknown embedder provider '{provider}'; use one of: {', '.join(EMBEDDER_PROVIDERS)}")
    return factories[provider]()


def get_llm(settings: "Settings", on_message: Callable[[str], None] | None = None) -> "ChatModel":
    """Build (once per process and configuration) the chat model named by `settings.model.llm`."""
    provider, model = split_spec(settings.model.llm)
    # The model group is the key (a change there builds another model), the API key only as a digest.
    key = (replace(settings.model, openai_api_key=hashlib.sha256(settings.model.openai_api_key.encode()).hexdigest()),)
    return CACHE.get("llm", key, lambda: _build_llm(provider, model, settings, on_message))


def _build_llm(provider: str, model: str, settings: "Settings",
               on_message: Callable[[str], None] | None) -> "ChatModel":
    if provider == "local":
        from .llms import LocalChatModel
        llm: "ChatModel" = LocalChatModel(model, settings, on_message=on_message)
    elif provider in ("openai", "openai-compatible"):
        from .openai_chat import OpenAIChatModel
        llm = OpenAIChatModel(model, settings, compatible=provider == "openai-compatible")
    elif provider == "fake":
        from .fakes import FakeChatModel, QueueChatModel
        llm = QueueChatModel(model) if model == "queue" else FakeChatModel(model)
    else:
        raise ConfigError(f"unknown model provider '{provider}'; use one of: {', '.join(LLM_PROVIDERS)}")
    return llm
