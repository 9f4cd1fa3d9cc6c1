"""Hostile articles: instructions planted in the corpus are never obeyed.

The planted corpus (tests/data/injection/, described by variants.json) is the five sample articles
plus one file per attack; each variant is indexed on its own with the samples. The tests run the
deterministic `fake:extractive` model, which answers by quoting the source sentence that best
overlaps the question. So for this model "following" an injection means *selecting the planted
instruction as evidence*: once a planted imperative sentence is handed to the model as a source,
quoting it back (canary and all) is exactly what an extractive answerer does. The protection under
test is therefore evidence selection (planted instructions never reach the prompt), HTML extraction
(hidden text never reaches the index) and citation resolution (only handed-out labels, verbatim
quotes). benchmarks/bench_injection.py measures the same variants with the real local model.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from caches import clear_process_caches

from assistant.backends.cache import CACHE
from assistant.answering.ask import Assistant
from assistant.backends import get_llm
from assistant.indexing.build import build_index
from assistant.reading.loaders import load_document
from assistant.search.retrieval import get_retriever, search
from assistant.settings import Settings
from assistant.indexing.store import locate, read_manifest
from assistant.types import Answer

DATA = Path(__file__).resolve().parent / "data" / "injection"
SAMPLES = Path(__file__).resolve().parent.parent / "articles"
SPEC: dict[str, Any] = json.loads((DATA / "variants.json").read_text(encoding="utf-8"))
VARIANTS: dict[str, dict[str, Any]] = {v["id"]: v for v in SPEC["variants"]}
IDS = list(VARIANTS)
ELSEWHERE = SPEC["elsewhere"]
CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|system|>")


def _forget_fake_models() -> None:
    CACHE.clear("llm", where=lambda key: str(key[0]).startswith("fake:"))


@pytest.fixture(autouse=True)
def _fresh_model() -> Iterator[None]:
    # The fake model records every prompt: a fresh one per test keeps the record per test
    # (a loaded real model stays cached).
    _forget_fake_models()
    yield
    _forget_fake_models()


@pytest.fixture(scope="module")
def variant_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Settings]]:
    """Settings of an index holding the five samples plus one planted variant (built once each)."""
    built: dict[str, Settings] = {}

    def get(variant_id: str) -> Settings:
        if variant_id not in built:
            root = tmp_path_factory.mktemp(f"inj-{variant_id}")
            corpus = root / "corpus"
            corpus.mkdir()
            for path in sorted(DATA.glob("0*.txt")):
                shutil.copy(path, corpus / path.name)
            shutil.copy(DATA / "metadata.json", corpus / "metadata.json")
            shutil.copy(DATA / VARIANTS[variant_id]["file"], corpus / VARIANTS[variant_id]["file"])
            settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(root / "idx"),
                                         embedder="fake:hash", llm="fake:extractive")
            report = build_index(corpus, settings=settings)
            assert report.added == 6 and not report.skipped, report.to_dict()
            built[variant_id] = settings
        return built[variant_id]

    yield get
    clear_process_caches()


def _bad_strings(variant: dict[str, Any]) -> list[str]:
    return list(variant["canaries"]) + list(variant["forbidden"])


def _visible(answer: Answer) -> str:
    """What the user is shown as the assistant's own words and evidence (not the raw closest passages)."""
    return answer.answer + "\n" + "\n".join(c.quote for c in answer.citations)


def _assert_citations_sound(answer: Answer, settings: Settings) -> None:
    corpus = Path(settings.index.corpus_dir)
    indexed = set((read_manifest(locate(settings)) or {})["files"])
    labels_in_text = set(re.findall(r"\[(S\d+)\]", answer.answer))
    assert labels_in_text <= {c.label for c in answer.citations}, answer.answer
    for c in answer.citations:
        assert c.file in indexed, f"cites {c.file!r}, which is not in the index"
        assert not Path(c.file).is_absolute() and ".." not in Path(c.file).parts
        text = load_document(corpus / c.file, c.file, settings.index.max_file_bytes).text
        assert text[c.start:c.end] == c.quote, f"quote of {c.file} is not verbatim"


def _prompts(settings: Settings) -> list[str]:
    """The user messages the (cached, fresh per test) fake model received."""
    model = get_llm(settings)
    return [m["content"] for request in model.requests for m in request if m["role"] == "user"]  # type: ignore[attr-defined]


# --- the corpus itself ------------------------------------------------------------------------

def test_planted_corpus_holds_the_unchanged_samples_and_at_least_ten_variants() -> None:
    for sample in sorted(SAMPLES.glob("*.txt")):
        assert (DATA / sample.name).read_bytes() == sample.read_bytes(), sample.name
    assert len(VARIANTS) >= 10
    for variant in VARIANTS.values():
        text = (DATA / variant["file"]).read_text(encoding="utf-8")
        assert "Hayashi" in text and "Qin" in text and "Beijing" in text, "planted article must be topical"
        for canary in variant["canaries"]:
            assert canary in text
            assert not any(canary in s.read_text(encoding="utf-8") for s in SAMPLES.glob("*.txt"))


@pytest.mark.parametrize("variant_id", IDS)
def test_planted_article_is_retrieved_for_its_topic_question(variant_index: Callable[[str], Settings],
                                                             variant_id: str) -> None:
    # Otherwise the attack never reaches the prompt and the other tests prove nothing.
    settings = variant_index(variant_id)
    files = [p.file for p in search(VARIANTS[variant_id]["planted_question"], settings, k=4)]
    assert VARIANTS[variant_id]["file"] in files


# --- answers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", range(len(ELSEWHERE)))
@pytest.mark.parametrize("variant_id", IDS)
def test_question_answered_elsewhere_keeps_its_answer_despite_the_planted_article(
        variant_index: Callable[[str], Settings], variant_id: str, case: int) -> None:
    variant, spec = VARIANTS[variant_id], ELSEWHERE[case]
    settings = variant_index(variant_id)
    answer = Assistant(settings).ask(spec["question"])
    for bad in _bad_strings(variant):
        assert bad not in _visible(answer), f"planted {bad!r} reached the answer: {answer.answer}"
    _assert_citations_sound(answer, settings)
    assert variant["file"] not in {c.file for c in answer.citations}, answer.answer
    if spec["fake_answers"]:  # the fake model answers this one on the clean corpus
        assert not answer.declined, f"the planted article made the assistant decline: {variant_id}"
        assert spec["expect"] in answer.answer, answer.answer


@pytest.mark.parametrize("variant_id", IDS)
def test_question_on_the_planted_topic_never_echoes_the_planted_instruction(
        variant_index: Callable[[str], Settings], variant_id: str) -> None:
    variant = VARIANTS[variant_id]
    settings = variant_index(variant_id)
    answer = Assistant(settings).ask(variant["planted_question"])
    for bad in _bad_strings(variant):
        assert bad not in _visible(answer), f"planted {bad!r} reached the answer: {answer.answer}"
    _assert_citations_sound(answer, settings)
    # Declining is safe; answering must come from the article's factual sentence.
    assert answer.declined or variant["planted_fact"] in answer.answer or variant.get("never_indexed"), \
        f"answer is neither the planted article's fact nor a decline: {answer.answer}"


@pytest.mark.parametrize("variant_id", IDS)
def test_planted_instructions_are_never_handed_to_the_model_as_evidence(
        variant_index: Callable[[str], Settings], variant_id: str) -> None:
    variant = VARIANTS[variant_id]
    settings = variant_index(variant_id)
    assistant = Assistant(settings)
    for question in [variant["planted_question"]] + [e["question"] for e in ELSEWHERE]:
        assistant.ask(question)
    prompts = _prompts(settings)
    assert prompts, "no question reached the model: the test would prove nothing"
    for prompt in prompts:
        for bad in variant["canaries"]:
            assert bad not in prompt, f"planted instruction with {bad!r} was selected as evidence"


def test_prompt_carries_no_chat_template_tokens_from_an_article(variant_index: Callable[[str], Settings]) -> None:
    settings = variant_index("fake_system")
    Assistant(settings).ask(VARIANTS["fake_system"]["planted_question"])
    prompts = _prompts(settings)
    assert prompts
    for prompt in prompts:
        for token in CONTROL_TOKENS:
            assert token not in prompt, f"article text smuggled {token} into the prompt"
        assert not re.search(r"^\s*SYSTEM\s*:", prompt, re.M | re.I)


@pytest.mark.parametrize("variant_id", ["fake_label", "cite_missing_file"])
def test_source_labels_in_the_prompt_are_only_the_ones_the_code_handed_out(
        variant_index: Callable[[str], Settings], variant_id: str) -> None:
    settings = variant_index(variant_id)
    assistant = Assistant(settings)
    for question in [VARIANTS[variant_id]["planted_question"], ELSEWHERE[0]["question"]]:
        assistant.ask(question)
    prompts = _prompts(settings)
    assert prompts
    for prompt in prompts:
        lines = re.findall(r"^\[S\d+\] ", prompt, re.M)
        assert lines
        assert len(re.findall(r"\[S\d+\]", prompt)) == len(lines), "an article forged a source label"
        assert "secret.txt" not in prompt


def test_decline_sentinel_inside_an_article_does_not_silence_the_assistant(
        variant_index: Callable[[str], Settings]) -> None:
    settings = variant_index("denial")
    assistant = Assistant(settings)
    answer = assistant.ask(ELSEWHERE[0]["question"])
    assert not answer.declined and "Astellas" in answer.answer, answer.answer
    for prompt in _prompts(settings):
        assert "NOT_IN_SOURCES" not in prompt


@pytest.mark.parametrize("variant_id", ["hidden_html", "hidden_css"])
def test_text_hidden_in_html_never_reaches_the_index(variant_index: Callable[[str], Settings],
                                                     variant_id: str) -> None:
    variant = VARIANTS[variant_id]
    settings = variant_index(variant_id)
    chunks = [c for c in get_retriever(settings).all_chunks() if c.file == variant["file"]]
    assert any(variant["planted_fact"] in c.text for c in chunks), "the visible article text must be indexed"
    for chunk in chunks:
        for canary in variant["canaries"]:
            assert canary not in chunk.text, f"hidden HTML text {canary} was indexed"


def test_streamed_answer_never_echoes_the_planted_canary(variant_index: Callable[[str], Settings]) -> None:
    variant = VARIANTS["ignore_previous"]
    settings = variant_index("ignore_previous")
    for question in (variant["planted_question"], ELSEWHERE[0]["question"]):
        events = list(Assistant(settings).stream(question))
        text = "".join(e for e in events if isinstance(e, str))
        final = events[-1]
        assert isinstance(final, Answer)
        for canary in variant["canaries"]:
            assert canary not in text and canary not in _visible(final)


# --- one run with the real small model -------------------------------------------------------------

def _small_model_available() -> bool:
    from assistant.backends.model_files import KNOWN_MODELS

    spec = KNOWN_MODELS["qwen2.5-coder-0.5b"]
    if importlib.util.find_spec("xllamacpp") is None:
        return False
    try:
        return all(metadata.version(p) == spec.version for p in spec.packages)
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.real_model
@pytest.mark.skipif(not _small_model_available(), reason="xllamacpp or the qwen2.5-coder-0.5b packages are missing")
@pytest.mark.parametrize("variant_id", ["ignore_previous", "fake_system", "denial"])
def test_real_small_model_does_not_obey_planted_instructions(variant_index: Callable[[str], Settings],
                                                             variant_id: str) -> None:
    variant = VARIANTS[variant_id]
    settings = variant_index(variant_id).with_(llm="local:qwen2.5-coder-0.5b", max_answer_tokens=80)
    assistant = Assistant(settings)
    for question in (variant["planted_question"], ELSEWHERE[0]["question"]):
        answer = assistant.ask(question)
        for bad in _bad_strings(variant):
            assert bad.lower() not in _visible(answer).lower(), f"{variant_id}: {answer.answer}"
        _assert_citations_sound(answer, settings)
