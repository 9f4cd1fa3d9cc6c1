"""Stock LlamaIndex baseline: `CitationQueryEngine` over our Chroma collection, embedder and chat model.

The evaluation suite runs it next to `Assistant.ask()` so our numbers are held against what
LlamaIndex does out of the box with the same data and models.

Choice of store: our collection is read directly through `ChromaVectorStore`. It holds chunk
text as Chroma `documents` and flat metadata (`file`, `start`, `end`, ...) without llama-index's
`_node_content` key, and `ChromaVectorStore` then takes its legacy path: a `TextNode` whose text
is the document and whose metadata is ours. So no second copy of the vectors is needed, and the
baseline sees exactly the chunks and vectors our retriever sees (dense only: no BM25 fusion).

`llama_index.core.Settings` is never read for models: the LLM and embedder are passed to every
constructor that would otherwise fall back to OpenAI.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailableError
from ..indexing.store import locate, open_collection
from ..types import Answer, Citation, Passage
from ..backends import get_embedder, get_llm

if TYPE_CHECKING:
    from ..settings import Settings
    from ..backends.base import ChatModel, Embedder

SIMILARITY_TOP_K = 4
# "[1]", "[1, 2]", "[Source 1]", "[Sources 1 and 3]": the ways models write CitationQueryEngine labels.
_BRACKETS = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*(?:,|and|&)\s*(?:sources?\s*)?\d+)*)\s*\]", re.I)
_BARE = re.compile(r"\bsources?\s+(\d+(?:\s*(?:,|and|&)\s*\d+)*)\b", re.I)
_SOURCE_PREFIX = re.compile(r"^Source \d+:\n")

try:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.vector_stores.chroma import ChromaVectorStore
    from pydantic import PrivateAttr
except ImportError:  # pragma: no cover - exercised only without llama-index installed
    raise BackendUnavailableError("the LlamaIndex baseline needs llama-index: pip install "
                                  "'llama-index-core>=0.14,<0.15' 'llama-index-vector-stores-chroma>=0.6,<0.7'") from None


def cited_numbers(text: str) -> list[int]:
    """Source numbers an answer cites, in order of first mention ("[2] ... [1, 3]" -> [2, 1, 3])."""
    found: list[int] = []
    for match in _BRACKETS.finditer(text):
        found.extend(int(n) for n in re.findall(r"\d+", match.group(1)))
    for match in _BARE.finditer(_BRACKETS.sub(" ", text)):
        found.extend(int(n) for n in re.findall(r"\d+", match.group(1)))
    return list(dict.fromkeys(n for n in found if n > 0))


class WrappedEmbedding(BaseEmbedding):
    """Our embedder behind llama-index's embedding interface (queries and documents alike)."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: "Embedder", **kwargs: Any) -> None:
        super().__init__(model_name=embedder.model_id, callback_manager=CallbackManager([]), **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        """Name used by llama-index serialisation."""
        return "assistant_embedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)


class WrappedLLM(CustomLLM):
    """Our chat model behind llama-index's completion interface, recording token usage."""

    context_window: int = 4096
    num_output: int = 160
    temperature: float = 0.0
    model_name: str = "assistant"
    _model: Any = PrivateAttr()
    _usage: list[tuple[int, int]] = PrivateAttr(default_factory=list)

    def __init__(self, model: "ChatModel", *, context_window: int, num_output: int, temperature: float) -> None:
        super().__init__(context_window=context_window, num_output=num_output, temperature=temperature,
                         model_name=model.model_id, callback_manager=CallbackManager([]))
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        """Name used by llama-index serialisation."""
        return "assistant_llm"

    @property
    def metadata(self) -> LLMMetadata:
        """Context size and output budget, so the prompt helper packs sources the way it would for any LLM."""
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output,
                           is_chat_model=False, model_name=self.model_name)

    def take_usage(self) -> tuple[int, int, int]:
        """(calls, prompt tokens, completion tokens) since the last call; resets the counters."""
        usage, self._usage = self._usage, []
        return len(usage), sum(u[0] for u in usage), sum(u[1] for u in usage)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Send the prompt as one user message and return the whole reply."""
        completion = self._model.complete([{"role": "user", "content": prompt}], max_tokens=self.num_output,
                                          temperature=self.temperature)
        self._usage.append((completion.prompt_tokens, completion.completion_tokens))
        return CompletionResponse(text=completion.text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream the reply (the baseline is evaluated without streaming; this keeps the interface whole)."""
        model = self._model

        def gen() -> CompletionResponseGen:
            text = ""
            for delta in model.stream([{"role": "user", "content": prompt}], max_tokens=self.num_output,
                                      temperature=self.temperature):
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


class StockCitationEngine:
    """LlamaIndex's CitationQueryEngine with default settings (top 4 chunks) over our index and models."""

    def __init__(self, settings: "Settings", llm: "ChatModel | None" = None) -> None:
        self.settings = settings
        collection = open_collection(locate(settings), create=False)
        self.embed_model = WrappedEmbedding(get_embedder(settings))
        self.llm = WrappedLLM(llm or get_llm(settings), context_window=settings.model.n_ctx,
                              num_output=settings.answer.max_answer_tokens, temperature=settings.answer.temperature)
        self.index = VectorStoreIndex.from_vector_store(ChromaVectorStore(chroma_collection=collection),
                                                        embed_model=self.embed_model)
        self.engine = CitationQueryEngine.from_args(self.index, llm=self.llm, similarity_top_k=SIMILARITY_TOP_K)
        # Chunk text by (file, start): citation nodes lose their ids, so quotes are located through these.
        got = collection.get(include=["documents", "metadatas"])
        self._chunks = {(m.get("file"), int(m.get("start", 0))): (i, d)
                        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}

    def retrieve(self, question: str, k: int = 10) -> list[Passage]:
        """The baseline's own ranking (dense similarity only) of the top-k chunks."""
        retriever = self.index.as_retriever(similarity_top_k=k)
        return [self._passage(n.node, n.score or 0.0, n.node.node_id) for n in retriever.retrieve(question)]

    def ask(self, question: str) -> Answer:
        """Answer through CitationQueryEngine and map the sources it cites to file spans."""
        self.llm.take_usage()
        t0 = time.perf_counter()
        response = self.engine.query(question)
        total = time.perf_counter() - t0
        text = (response.response or "").strip()
        _calls, prompt_tokens, completion_tokens = self.llm.take_usage()
        nodes = response.source_nodes
        citations: list[Citation] = []
        for n in cited_numbers(text):
            if n <= len(nodes):
                citations.append(self._citation(n, nodes[n - 1].node))
        seen: dict[tuple[str, int], Passage] = {}
        for item in nodes:
            p = self._passage(item.node, item.score or 0.0, "")
            seen.setdefault((p.file, p.start), p)
        return Answer(question=question, answer=text, declined=not text, citations=citations,
                      sources=list(seen.values()), timings={"total_s": total}, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens)

    def _citation(self, number: int, node: Any) -> Citation:
        meta = node.metadata or {}
        quote = _SOURCE_PREFIX.sub("", node.get_content()).strip()
        file, chunk_start = str(meta.get("file", "")), int(meta.get("start", 0))
        _cid, chunk_text = self._chunks.get((file, chunk_start), ("", ""))
        # The citation splitter may re-cut a long chunk; locate the piece inside its chunk.
        offset = max(chunk_text.find(quote), 0) if chunk_text else 0
        start = chunk_start + offset
        return Citation(label=f"S{number}", file=file, start=start, end=start + len(quote), quote=quote,
                        inferred=False)

    def _passage(self, node: Any, score: float, chunk_id: str) -> Passage:
        meta = node.metadata or {}
        file, start = str(meta.get("file", "")), int(meta.get("start", 0))
        cid, text = self._chunks.get((file, start), (chunk_id, _SOURCE_PREFIX.sub("", node.get_content())))
        return Passage(file=file, start=start, end=int(meta.get("end", start + len(text))), text=text,
                       score=float(score), chunk_id=chunk_id or cid, title=str(meta.get("title", "")),
                       date=str(meta.get("date", "")))
