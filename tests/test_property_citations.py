"""Citation integrity as a property: whatever text a model returns, citations are sound.

Sources are built from a real index of the sample articles (fake:hash embedder, real Chroma).
For any answer text (source sentences, junk, labels [S0]..[S20], broken label fragments), every
resolved citation names an indexed file and quotes it verbatim, and the answer shows no label
that does not resolve to a citation.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from caches import clear_process_caches
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st
from prompt_format import prompt_sources

from assistant.answering.ask import Assistant
from assistant.backends import get_llm
from assistant.backends.fakes import QueueChatModel
from assistant.indexing.chunking import split_sentences
from assistant.answering.checks import understand
from assistant.answering.checks.cite import carried, labels_for
from assistant.answering.citations import resolve
from assistant.labels import Source
from assistant.indexing.build import build_index
from assistant.reading.loaders import load_document
from assistant.search.retrieval import get_retriever
from assistant.settings import Settings
from assistant.indexing.store import locate, read_manifest

SAMPLES = Path(__file__).resolve().parent.parent / "articles"
LABEL = re.compile(r"\[S(\d+)\]")
QUESTIONS = [
    "Which pharmaceutical company employed the senior employee detained in Beijing?",
    "Where will the Group of Seven summit be hosted by Japan?",
    "What did China impose on seafood imports from Japan?",
    "Which Japanese foreign minister made his maiden trip to Beijing?",
    "When was the hotline between defense authorities set up?",
    "What did the Genron NPO survey find about Japanese impressions of China?",
]
PROPERTY = hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class World:
    """A built sample index, its files' text, and the sources evidence selection hands out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.corpus = Path(settings.index.corpus_dir)
        self.indexed = set((read_manifest(locate(settings)) or {})["files"])
        self.texts = {rel: load_document(self.corpus / rel, rel, settings.index.max_file_bytes).text
                      for rel in self.indexed}
        self.chunks = get_retriever(settings).all_chunks()
        assistant = Assistant(settings)
        self.gathered = [assistant.gather(q).sources for q in QUESTIONS]
        # Every sentence of every chunk as a candidate source span.
        self.spans: list[tuple[str, int, int, str, str]] = []
        for c in self.chunks:
            for s in split_sentences(c.text):
                self.spans.append((c.file, c.start + s.start, c.start + s.end, c.text[s.start:s.end], c.date))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("prop")
    corpus = root / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(root / "idx"),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(corpus, settings=settings)
    yield World(settings)
    clear_process_caches()


# --- strategies ----------------------------------------------------------------------------------

JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
FRAGMENTS = st.sampled_from(["[S", "]", "[", "S", "1", "12", "[S[S1]9]", "[S0]", "[S-1]", "[s1]", "[S 2]",
                             "according to the sources", "NOT_IN_SOURCES", ".", "!", "?", "\n", "\n\n",
                             "“", "”", "U.S.", "Mr.", " ", "(", ")", "--"])


@st.composite
def pieces(draw: Any) -> list[tuple[str, Any]]:
    """A recipe for an answer: source sentences (by index), junk, labels and label fragments."""
    items = st.one_of(
        st.tuples(st.just("src"), st.integers(0, 10_000), st.integers(0, 200), st.booleans()),
        st.tuples(st.just("junk"), JUNK),
        st.tuples(st.just("label"), st.integers(0, 20)),
        st.tuples(st.just("frag"), FRAGMENTS),
    )
    return draw(st.lists(items, min_size=1, max_size=12))


def render(recipe: list[tuple[str, Any]], sentences: list[str]) -> str:
    """Turn a recipe into answer text using the given source sentences."""
    out = []
    for item in recipe:
        if item[0] == "src" and sentences:
            sentence = sentences[item[1] % len(sentences)]
            out.append(sentence if item[3] else sentence[: max(1, item[2] % (len(sentence) + 1))])
        elif item[0] == "junk":
            out.append(item[1])
        elif item[0] == "label":
            out.append(f"[S{item[1]}]")
        elif item[0] == "frag":
            out.append(item[1])
    return " ".join(out)


@st.composite
def handed_out(draw: Any, world: World) -> list[Source]:
    """Sources as evidence selection makes them: labelled S1.., verbatim spans of indexed files."""
    if draw(st.booleans()):
        return world.gathered[draw(st.integers(0, len(world.gathered) - 1))]
    picks = draw(st.lists(st.integers(0, len(world.spans) - 1), min_size=1, max_size=6, unique=True))
    sources = []
    for n, i in enumerate(picks, 1):
        file, start, end, text, date = world.spans[i]
        sources.append(Source(label=f"S{n}", file=file, start=start, end=end, text=text, date=date))
    return sources


def assert_sound(text: str, citations: list[Any], sources: list[Source], world: World) -> None:
    by_label = {s.label: s for s in sources}
    for c in citations:
        assert c.label in by_label, f"citation label {c.label} was never handed out"
        assert c.file in world.indexed, f"citation names {c.file!r}, not an indexed file"
        assert c.file == by_label[c.label].file
        assert c.quote and world.texts[c.file][c.start:c.end] == c.quote, "quote is not the file's text"
        src = by_label[c.label]
        assert src.start <= c.start < c.end <= src.end, "quote lies outside the cited source"
    shown = set(LABEL.findall(text))
    cited = {c.label[1:] for c in citations}
    assert shown <= cited, f"answer shows labels {sorted(shown - cited)} with no citation: {text!r}"


# --- citations.resolve ------------------------------------------------------------------------------

@PROPERTY
@given(data=st.data(), recipe=pieces())
@example(data=None, recipe=[("src", 0, 0, True), ("frag", "[S[S1]9]")])
def test_resolved_citations_name_indexed_files_and_quote_them_verbatim(world: World, data: Any,
                                                                       recipe: list[tuple[str, Any]]) -> None:
    sources = world.gathered[0] if data is None else data.draw(handed_out(world))
    sentences = [world.texts[s.file][s.start:s.end] for s in sources]
    sentences += [s.text[sp.start:sp.end] for s in sources for sp in split_sentences(s.text)]
    text = render(recipe, sentences)
    question = understand("What did the ministers agree?", use_ner=True)
    resolution = resolve(text, sources, cite=lambda sentence, labels: labels_for(question, sentence, labels, sources,
                                                                                 use_ner=True))
    assert_sound(resolution.text, resolution.citations, sources, world)


def test_label_hidden_inside_another_label_never_shows_in_the_answer(world: World) -> None:
    sources = world.gathered[0]
    sentence = sources[0].text
    resolution = resolve(f"{sentence} [S[S1]9]", sources)
    assert "[S9]" not in resolution.text, resolution.text
    assert_sound(resolution.text, resolution.citations, sources, world)


@PROPERTY
@given(data=st.data())
def test_a_source_sentence_quoted_verbatim_with_its_own_label_is_carried_by_it(world: World, data: Any) -> None:
    file, start, end, text, date = data.draw(st.sampled_from(world.spans))
    source = Source(label="S1", file=file, start=start, end=end, text=text, date=date)
    resolution = resolve(f"{text} [S1]", [source])
    assert not resolution.uncited, (text, resolution)
    assert resolution.citations and resolution.citations[0].quote in text
    assert carried(understand("What happened?", use_ner=True), text, [source], use_ner=True), text


@pytest.mark.parametrize("needle", ["Tokyo-Seoul", "Indo-Pacific", "U.S.", "Covid-19"])
def test_verbatim_sentence_with_hyphenated_or_dotted_name_is_carried_by_itself(world: World, needle: str) -> None:
    file, start, end, text, date = next(s for s in world.spans if needle in s[3])
    assert carried(understand("What happened?", use_ner=True), text, [Source("S1", file, start, end, text, date)],
                   use_ner=True), f"a verbatim quote with {needle!r} was not carried by its own source"


# --- through Assistant.ask with the queue model ---------------------------------------------------

def queue_model(world: World) -> tuple[Settings, QueueChatModel]:
    """The world's settings with fake:queue, and that model (the one the Assistant gets), emptied."""
    s = world.settings.with_(llm="fake:queue", checks_off=frozenset({"picked"}))
    model = get_llm(s)
    assert isinstance(model, QueueChatModel)
    model.reset()
    return s, model


def prompt_sentences(sources: list[Source]) -> list[str]:
    """The source sentences as the prompt shows them (whitespace collapsed), split like a model would quote."""
    lines = [text for _l, _f, _d, text in prompt_sources(Assistant.messages("q", sources)[-1]["content"])]
    return [p for line in lines for p in re.split(r"(?<=[.!?])\s+", line)]


@PROPERTY
@given(question=st.sampled_from(QUESTIONS), recipe=pieces(), streaming=st.booleans(),
       # More support verdicts than a reply of at most 12 pieces has cited sentences.
       verdicts=st.lists(st.booleans(), min_size=40, max_size=40))
# Found by CI: a stray "[S 2]" is a sentence stating the figure 2, which the figure check withholds.
@example(question="Which pharmaceutical company employed the senior employee detained in Beijing?",
         recipe=[("label", 1), ("frag", "[S 2]"), ("src", 163, 5, False)], streaming=False,
         verdicts=[True] + [False] * 39)
def test_any_model_output_through_ask_yields_only_sound_citations(world: World, question: str,
                                                                   recipe: list[tuple[str, Any]], streaming: bool,
                                                                   verdicts: list[bool]) -> None:
    # The gate passes; the reply is rendered from the prompt's sources; each cited sentence's
    # support check says yes or no as drawn (withheld sentences must leave the citations sound too).
    s, model = queue_model(world)
    assistant = Assistant(s)
    sources = assistant.gather(question).sources
    model.enqueue_choice("1", 0.95).enqueue(render(recipe, prompt_sentences(sources)))
    for ok in verdicts:
        model.enqueue_choice("yes" if ok else "no", 0.9)
    if streaming:
        events = list(assistant.stream(question))
        answer = events[-1]
    else:
        answer = assistant.ask(question)
    assert_sound(answer.answer, answer.citations, sources, world)
    assert "NOT_IN_SOURCES" not in answer.answer
    if answer.declined:
        assert not answer.citations
    else:
        # Only sentences the support check said no to, or that state a figure no cited source
        # states, are withheld.
        refused = {v.subject for v in answer.verdicts if v.name in ("supported", "numbers") and not v.passed}
        assert set(answer.unsupported_sentences) <= refused


@pytest.mark.parametrize("reply", ["[S0]", "[S9]", "[Source: S0]"])
def test_model_reply_made_only_of_unknown_labels_declines(world: World, reply: str) -> None:
    s, model = queue_model(world)
    model.enqueue_choice("1", 0.95).enqueue(reply)
    answer = Assistant(s).ask(QUESTIONS[0])
    assert len(model.requests) == 1, "the gate passed, so the model was asked"
    assert answer.declined and not answer.citations
    assert len(model.choice_requests) == 1, "no sentence was left to check for support"


@pytest.mark.parametrize("reply", ["[S1]", "[S1][S2]", " [S3] ", "[S1]\n[S2]", "[Source: S1]"])
def test_model_reply_made_only_of_labels_is_answered_by_quoting_the_cited_source(world: World, reply: str) -> None:
    # The model pointed at a source without saying anything: the answer is that source's sentence
    # closest to the question, verbatim, cited to it, and it is checked for support like any sentence.
    s, model = queue_model(world)
    assistant = Assistant(s)
    sources = assistant.gather(QUESTIONS[0]).sources
    model.enqueue_choice("1", 0.95).enqueue(reply).enqueue_choice("yes", 0.9)
    answer = assistant.ask(QUESTIONS[0])
    assert not answer.declined, answer.decline_reason
    assert_sound(answer.answer, answer.citations, sources, world)
    named = {f"S{n}" for n in re.findall(r"S(\d+)", reply)}
    assert {c.label for c in answer.citations} <= named
    quote = re.sub(r"\s*\[S\d+\]", "", answer.answer).rstrip(".")
    assert any(" ".join(quote.split()) in " ".join(s.text.split()) for s in sources if s.label in named)
    assert quote in model.choice_requests[1][-1]["content"], "the quote was checked for support"


def test_a_streamed_label_only_reply_is_followed_by_the_quoted_answer(world: World) -> None:
    # The user saw only "[S1]" stream by: the quote the code answered with must follow it.
    s, model = queue_model(world)
    model.enqueue_choice("1", 0.95).enqueue("[S1]").enqueue_choice("yes", 0.9)
    events = list(Assistant(s).stream(QUESTIONS[0]))
    answer = events[-1]
    shown = "".join(e for e in events[:-1] if isinstance(e, str))
    assert not answer.declined
    assert shown.startswith("[S1]") and shown.endswith(answer.answer)
