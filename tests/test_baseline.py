"""The stock LlamaIndex baseline: CitationQueryEngine over our index, models passed explicitly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from assistant.backends.fakes import FakeChatModel
from assistant.evaluate.baseline import StockCitationEngine, cited_numbers
from assistant.indexing.build import build_index
from assistant.settings import Settings
from assistant.types import Completion

QUESTION = "Which company employed the senior Japanese employee detained in China in March 2023?"


class CitationPromptFake:
    """fake:extractive reading CitationQueryEngine's prompt ("Source 1:" blocks, "Query:" line).

    The shared fake parses only our own prompt format (a file heading, "[S1] text" lines and "Question:"), so this
    adapter rewrites the stock prompt into that shape and the reply's "[S1]" back into "[1]".
    """

    model_id = "fake:extractive"

    def __init__(self) -> None:
        self.inner = FakeChatModel("extractive")
        self.prompts: list[str] = []

    def _translate(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        body = prompt.split("------", 1)[1] if "------" in prompt else prompt
        sources = re.findall(r"Source (\d+):\n(.*?)(?=\nSource \d+:|\n------)", body, re.S)
        query = re.search(r"^Query: (.+)$", body, re.M)
        lines = ["source:"] + [f"[S{n}] {' '.join(text.split())}" for n, text in sources]
        return [{"role": "user", "content": "\n".join(lines) + f"\n\nQuestion: {query.group(1) if query else ''}"}]

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """The fake's extractive answer, labels in CitationQueryEngine style."""
        out = self.inner.complete(self._translate(messages), max_tokens=max_tokens)
        return Completion(text=re.sub(r"\[S(\d+)\]", r"[\1]", out.text),
                          prompt_tokens=len(messages[-1]["content"].split()), completion_tokens=out.completion_tokens)

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """The whole reply as one delta."""
        yield self.complete(messages, max_tokens=max_tokens).text


@pytest.fixture
def indexed(settings: Settings) -> Settings:
    """The sample articles indexed with the fake embedder, answered by fake:extractive."""
    settings = settings.with_(llm="fake:extractive")
    build_index(settings.index.corpus_dir, settings=settings)
    return settings


def test_baseline_answer_cites_real_files_with_verbatim_quotes(indexed: Settings, corpus: Path) -> None:
    fake = CitationPromptFake()
    answer = StockCitationEngine(indexed, llm=fake).ask(QUESTION)
    assert "Source 1:" in fake.prompts[0] and "Query: " + QUESTION in fake.prompts[0]
    assert not answer.declined and "Astellas" in answer.answer
    assert answer.citations, answer.answer
    files = {p.name for p in corpus.iterdir()}
    for citation in answer.citations:
        assert citation.file in files
        assert re.fullmatch(r"S\d+", citation.label) and not citation.inferred
        assert citation.end - citation.start == len(citation.quote) > 0
        # Offsets point into the indexed chunk's text: the quote's words are in that file.
        assert citation.quote.split()[0] in (corpus / citation.file).read_text(encoding="utf-8")
    assert answer.prompt_tokens > 0 and answer.timings["total_s"] > 0
    assert len(answer.sources) <= 4


def test_baseline_with_shared_fake_model_answers_without_citations(indexed: Settings) -> None:
    # The shared fake cannot read the stock prompt and replies with its sentinel: the baseline has
    # no decline signal, so this is an (uncited) answer, not a decline.
    answer = StockCitationEngine(indexed).ask(QUESTION)
    assert answer.answer == "NOT_IN_SOURCES" and not answer.declined and answer.citations == []


def test_baseline_never_sets_llama_index_global_models(indexed: Settings) -> None:
    from llama_index.core import Settings as LlamaSettings

    engine = StockCitationEngine(indexed, llm=CitationPromptFake())
    engine.ask(QUESTION)
    # Reading Settings.llm would have built an OpenAI client; the private fields stay unset.
    assert LlamaSettings._llm is None and LlamaSettings._embed_model is None
    assert engine.engine._response_synthesizer._llm is engine.llm


def test_baseline_retrieve_ranks_chunks_of_our_index(indexed: Settings) -> None:
    passages = StockCitationEngine(indexed, llm=CitationPromptFake()).retrieve("Astellas Pharma employee detained", k=5)
    assert len(passages) == 5 and all(p.chunk_id and p.file.endswith(".txt") for p in passages)
    assert passages[0].score >= passages[-1].score


@pytest.mark.parametrize("text, numbers", [
    ("Tokyo [1]. Beijing [2][3].", [1, 2, 3]),
    ("Both agree [2, 1].", [2, 1]),
    ("As Source 3 says [Source 1].", [1, 3]),
    ("No citation here, 2023.", []),
])
def test_cited_numbers_reads_citation_query_engine_labels(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers
