"""Citations belong to the code: labels resolve to verbatim file spans, unknown labels are dropped,
missing labels are inferred, and sentences the cited passage does not support are flagged."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest
from prompt_format import prompt_sources

import assistant.answering
from assistant.answering import DECLINE_TEXT, Assistant
from assistant.backends import _LLM_CACHE
from assistant.citations import Source, resolve, supports
from assistant.indexing import build_index
from assistant.settings import Settings
from assistant.types import Completion

REPO = Path(__file__).resolve().parent.parent
ARTICLES = REPO / "articles"
DATES = {name: meta["date"] for name, meta in
         json.loads((ARTICLES / "metadata.json").read_text(encoding="utf-8"))["files"].items()}

APRIL_2 = "During their meeting on April 2, Hayashi asked Qin to visit Japan"
HOTLINE = "a hotline between their defense authorities has been set up, 16 years after first agreeing"
ASTELLAS = "The meeting comes as Japan presses for the release of a senior employee"


def file_text(name: str) -> str:
    """The article exactly as stored on disk."""
    return (ARTICLES / name).read_text(encoding="utf-8")


def source(label: str, name: str, starts_with: str) -> Source:
    """A labelled source: the paragraph of a real article that starts with the given words."""
    text = file_text(name)
    start = text.index(starts_with)
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    return Source(label=label, file=name, start=start, end=end, text=text[start:end], date=DATES[name])


def april_2_source(label: str = "S1") -> Source:
    return source(label, "000_ab41fa749cc5eede.txt", APRIL_2)


def hotline_source(label: str = "S1") -> Source:
    return source(label, "001_e2d5a160401ece19.txt", "Later on Friday, the Japanese and Chinese governments")


def nato_source(label: str) -> Source:
    return source(label, "001_e2d5a160401ece19.txt", "It will be the second straight year")


# --- resolve(): label resolution on real file spans -------------------------------------------

def test_each_label_maps_to_file_start_end_and_a_quote_equal_to_the_file_text() -> None:
    src = april_2_source("S1")
    out = resolve(f"{APRIL_2} [S1].", [src])

    assert len(out.citations) == 1
    c = out.citations[0]
    assert (c.label, c.file, c.inferred) == ("S1", "000_ab41fa749cc5eede.txt", False)
    assert c.quote == file_text(c.file)[c.start:c.end]
    assert APRIL_2 in c.quote
    assert out.unsupported == [] and out.uncited == []


def test_unknown_citation_label_is_dropped() -> None:
    src = april_2_source("S1")
    out = resolve(f"{APRIL_2} [S1][S9].", [src])

    assert [c.label for c in out.citations] == ["S1"]
    assert out.dropped_labels == ["S9"]
    assert "[S9]" not in out.text and "[S1]" in out.text


def test_a_sentence_citing_only_an_unknown_label_is_attributed_to_the_source_it_came_from() -> None:
    sources = [nato_source("S1"), april_2_source("S2")]
    out = resolve(f"{APRIL_2} [S7].", sources)

    assert "[S7]" not in out.text
    assert [(c.label, c.inferred) for c in out.citations] == [("S2", True)]


def test_uncited_sentence_plainly_drawn_from_a_source_gets_an_inferred_citation() -> None:
    sources = [nato_source("S1"), april_2_source("S2")]
    out = resolve("Hayashi asked Qin to visit Japan during their meeting on April 2.", sources)

    assert [(c.label, c.file, c.inferred) for c in out.citations] == [("S2", "000_ab41fa749cc5eede.txt", True)]
    c = out.citations[0]
    assert c.quote == file_text(c.file)[c.start:c.end]
    assert out.text.endswith("[S2].")
    assert out.uncited == [] and out.unsupported == []


def test_uncited_sentence_combining_two_sources_gets_inferred_citations_to_both() -> None:
    # The real 1.5B model's reply to "On what date did Hayashi and Qin Gang meet in Beijing?":
    # names and place come from one passage, the date from the other. Cited, this sentence would be
    # completed by the second source; uncited, it must not be thrown away (the answer was declined).
    sources = [
        source("S1", "000_ab41fa749cc5eede.txt", "Chinese Foreign Minister Qin Gang told"),
        april_2_source("S2"),
    ]
    out = resolve("Hayashi and Qin Gang met in Beijing on April 2, according to the source.", sources)

    assert out.uncited == [] and out.unsupported == []
    assert sorted((c.label, c.inferred) for c in out.citations) == [("S1", True), ("S2", True)]
    for c in out.citations:
        assert c.quote == file_text(c.file)[c.start:c.end]


@pytest.mark.parametrize("reply", [
    f"{APRIL_2}.\n[S1]",              # the label on a line of its own, as the 1.5B model wrote for q050
    f"{APRIL_2} [S1].\n\n[S1][S2]",
    "[S1]",
], ids=["label-on-next-line", "labels-only-paragraph", "only-a-label"])
def test_a_line_holding_only_labels_does_not_break_resolution(reply: str) -> None:
    out = resolve(reply, [april_2_source("S1")])

    assert "[S2]" not in out.text
    if out.sentences:
        assert [c.label for c in out.citations] == ["S1"]
        assert out.text.endswith("[S1].")


def test_uncited_sentence_no_source_supports_is_flagged_and_gets_no_citation() -> None:
    sources = [nato_source("S1"), april_2_source("S2")]
    invented = "The two ministers also signed a free trade agreement in Paris."
    out = resolve(f"{APRIL_2} [S2]. {invented}", sources)

    assert out.uncited == [invented]
    assert [c.label for c in out.citations] == ["S2"]


def test_sentence_whose_cited_passage_has_a_different_date_is_flagged_unsupported() -> None:
    src = april_2_source("S1")
    wrong = resolve("During their meeting on April 1, Hayashi asked Qin to visit Japan [S1].", [src])
    right = resolve("During their meeting on April 2, Hayashi asked Qin to visit Japan [S1].", [src])

    assert wrong.unsupported == ["During their meeting on April 1, Hayashi asked Qin to visit Japan."]
    assert right.unsupported == []


def test_sentence_whose_cited_passage_has_a_different_number_is_flagged_unsupported() -> None:
    src = hotline_source("S1")
    wrong = resolve("The defense hotline was set up 15 years after first agreeing on it [S1].", [src])
    right = resolve("The defense hotline was set up 16 years after first agreeing on it [S1].", [src])

    assert len(wrong.unsupported) == 1
    assert right.unsupported == []


def test_a_name_missing_from_the_passage_makes_the_passage_unsupporting() -> None:
    passage = april_2_source().text
    assert supports("Hayashi asked Qin to visit Japan.", passage)
    assert not supports("Hayashi asked Wang Yi to visit Japan.", passage)


def test_the_publication_date_of_a_source_counts_as_its_evidence() -> None:
    # 000 is dated 2023-05: "in May 2023" is backed by the date even though the text lacks it.
    out = resolve("In May 2023, a source said Hayashi asked Qin to visit Japan during their meeting on "
                  "April 2 [S1].", [april_2_source("S1")])
    assert out.unsupported == []


def dialogue_source(label: str = "S1") -> Source:
    return source(label, "000_ab41fa749cc5eede.txt", "Tokyo and Beijing are also considering resuming")


def test_names_the_question_states_need_no_source_but_dates_it_states_do() -> None:
    # The passage says "Tokyo and Beijing", never "Japan-China": repeating the question's own
    # name for the dialogue is not an unsupported claim...
    question = "When was the Japan-China high-level economic dialogue last held?"
    claim = "The Japan-China high-level economic dialogue was last held in 2019 [S1]."
    assert resolve(claim, [dialogue_source()], question=question).unsupported == []
    assert resolve(claim, [dialogue_source()]).unsupported != []
    # ...but a date taken from the question must still be in the source (000 is a 2023 article).
    dated_question = "Who met in December 2024 about the Japan-China high-level economic dialogue?"
    wrong = resolve("Hayashi and Qin met in December 2024 about the Japan-China dialogue [S1].",
                    [april_2_source()], question=dated_question)
    assert wrong.unsupported != []


def test_a_short_form_of_a_name_matches_its_full_form_in_the_same_article() -> None:
    # The passage calls him "Qin"; article 000 names him "Qin Gang" elsewhere.
    src = source("S1", "000_ab41fa749cc5eede.txt", "If it materializes")
    words = {"000_ab41fa749cc5eede.txt": frozenset(file_text("000_ab41fa749cc5eede.txt").lower().split())}
    claim = "Qin Gang's predecessor as foreign minister was Wang Yi [S1]."
    assert resolve(claim, [src], article_words=words).unsupported == []
    assert resolve(claim, [src]).unsupported != []
    # A surname alone is not enough when the article never gives that full name.
    assert resolve("Qin Shihuang's predecessor as foreign minister was Wang Yi [S1].", [src],
                   article_words=words).unsupported != []


def test_next_year_in_a_dated_article_supports_the_year_after_its_date() -> None:
    src = source("S1", "004_749f0bb3dcd254b9.txt", "Wang Yi is set to visit Japan next year")
    assert DATES["004_749f0bb3dcd254b9.txt"].startswith("2024")
    assert resolve("Wang Yi is set to visit Japan in 2025 [S1].", [src]).unsupported == []
    assert resolve("Wang Yi is set to visit Japan in 2026 [S1].", [src]).unsupported != []


@pytest.mark.parametrize("reply", [
    f"According to [S1], {APRIL_2}.",
    f"According to source [S1], {APRIL_2}.",
    f"Source [S1] states that {APRIL_2}.",
])
def test_a_lead_in_wrapped_around_a_label_is_moved_to_the_end(reply: str) -> None:
    out = resolve(reply, [april_2_source()])
    assert out.text == f"{APRIL_2} [S1]."
    assert out.unsupported == [] and [c.label for c in out.citations] == ["S1"]


# --- through Assistant.ask: the model only ever sees labels --------------------------------------

class ScriptedChatModel:
    """A chat model whose reply is computed from the labelled sources in the prompt."""

    def __init__(self, reply: Callable[[dict[str, tuple[str, str]]], str]) -> None:
        self.model_id = "fake:scripted"
        self.reply = reply
        self.requests: list[list[dict[str, str]]] = []

    def _text(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        sources = {label: (name, text) for label, name, _date, text in prompt_sources(messages[-1]["content"])}
        return self.reply(sources)

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        text = self._text(messages)
        return Completion(text=text, prompt_tokens=1, completion_tokens=len(text.split()))

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        text = self._text(messages)
        for i, word in enumerate(text.split(" ")):
            yield word if i == 0 else " " + word


def label_of(sources: dict[str, tuple[str, str]], words: str) -> str:
    """The label of the source holding these words (whitespace-insensitive)."""
    for label, (_name, text) in sources.items():
        if " ".join(words.split()) in " ".join(text.split()):
            return label
    raise AssertionError(f"no source holds {words!r}: {sorted(sources)}")


@pytest.fixture(scope="module")
def index_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("citations")
    shutil.copytree(ARTICLES, root / "articles")
    settings = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(settings.corpus_dir, settings=settings)
    return settings


@pytest.fixture
def use_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ScriptedChatModel], ScriptedChatModel]]:
    _LLM_CACHE.clear()

    def install(model: ScriptedChatModel) -> ScriptedChatModel:
        monkeypatch.setattr(assistant.answering, "get_llm", lambda settings, on_message=None: model)
        return model

    yield install
    _LLM_CACHE.clear()


ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
APRIL_Q = "On what date did Hayashi and Qin Gang meet in Beijing?"


@pytest.mark.parametrize("question", [
    ASTELLAS_Q, APRIL_Q,
    "What did Iwaya say about his meetings with Li Qiang?",
    "How many years after first agreeing was the defense hotline set up?",
])
def test_every_citation_of_an_answer_quotes_the_real_file_and_names_the_labelled_source(
        index_settings: Settings, question: str) -> None:
    _LLM_CACHE.clear()
    answer = Assistant(index_settings).ask(question)

    assert not answer.declined
    assert answer.citations
    for c in answer.citations:
        assert c.quote == (Path(index_settings.corpus_dir) / c.file).read_text(encoding="utf-8")[c.start:c.end]
        assert f"[{c.label}]" in answer.answer
        assert set(c.to_dict()) == {"label", "file", "start", "end", "quote", "inferred"}


def test_a_label_the_model_invents_never_reaches_the_answer(index_settings: Settings, use_model) -> None:
    model = use_model(ScriptedChatModel(lambda s: f"{ASTELLAS} of Japanese pharmaceutical firm Astellas Pharma "
                                                  f"[{label_of(s, ASTELLAS)}][S42]."))
    answer = Assistant(index_settings).ask(ASTELLAS_Q)

    assert model.requests
    assert "[S42]" not in answer.answer
    assert {c.label for c in answer.citations} == {label_of_request(model, ASTELLAS)}
    assert answer.citations[0].file == "001_e2d5a160401ece19.txt"


def label_of_request(model: ScriptedChatModel, words: str) -> str:
    sources = {label: (name, text) for label, name, _date, text in prompt_sources(model.requests[-1][-1]["content"])}
    return label_of(sources, words)


def test_an_uncited_copied_sentence_is_cited_by_inference_in_the_answer(index_settings: Settings, use_model) -> None:
    use_model(ScriptedChatModel(lambda s: "The meeting comes as Japan presses for the release of a senior "
                                          "employee of Japanese pharmaceutical firm Astellas Pharma."))
    answer = Assistant(index_settings).ask(ASTELLAS_Q)

    assert not answer.declined
    assert [(c.file, c.inferred) for c in answer.citations] == [("001_e2d5a160401ece19.txt", True)]
    assert re.search(r"Astellas Pharma \[S\d+\]\.$", answer.answer)


def test_an_invented_uncited_sentence_is_reported_among_uncited_sentences(index_settings: Settings,
                                                                         use_model) -> None:
    invented = "The employee was released on bail in Paris."
    use_model(ScriptedChatModel(lambda s: f"{ASTELLAS} of Japanese pharmaceutical firm Astellas Pharma "
                                          f"[{label_of(s, ASTELLAS)}]. {invented}"))
    answer = Assistant(index_settings).ask(ASTELLAS_Q)

    assert not answer.declined
    assert answer.uncited_sentences == [invented]
    assert answer.to_dict()["uncited_sentences"] == [invented]
    assert "Paris" not in answer.answer, "a sentence no source supports is withheld from the answer"


def test_a_wrong_date_cited_to_the_april_2_passage_is_reported_unsupported(index_settings: Settings,
                                                                          use_model) -> None:
    def reply(s: dict[str, tuple[str, str]]) -> str:
        good = f"{APRIL_2} [{label_of(s, APRIL_2)}]."
        bad = f"Hayashi and Qin met on April 3 [{label_of(s, APRIL_2)}]."
        return f"{good} {bad}"

    model = use_model(ScriptedChatModel(reply))
    answer = Assistant(index_settings).ask(APRIL_Q)

    prompt = model.requests[-1][-1]["content"]
    assert not re.search(r"\b3\b", prompt), "no source may hold the wrong date for this test to mean anything"
    assert not answer.declined
    assert answer.unsupported_sentences == ["Hayashi and Qin met on April 3."]
    assert "April 3" not in answer.answer and "April 2" in answer.answer


def test_a_reply_ending_in_a_bare_label_line_is_answered_not_crashed(index_settings: Settings, use_model) -> None:
    use_model(ScriptedChatModel(lambda s: f"{ASTELLAS} of Japanese pharmaceutical firm Astellas Pharma.\n"
                                          f"[{label_of(s, ASTELLAS)}]"))
    answer = Assistant(index_settings).ask(ASTELLAS_Q)

    assert not answer.declined and "Astellas" in answer.answer
    assert [c.file for c in answer.citations] == ["001_e2d5a160401ece19.txt"]


def test_an_answer_no_source_supports_at_all_is_declined(index_settings: Settings, use_model) -> None:
    use_model(ScriptedChatModel(lambda s: "The employee was released on bail in Paris [S1]."))
    answer = Assistant(index_settings).ask(ASTELLAS_Q)

    assert answer.declined
    assert answer.answer == DECLINE_TEXT
    assert answer.citations == []


@pytest.mark.parametrize("question, reply", [
    ("What is the name of the Astellas Pharma employee detained in Beijing?",
     "The name of the Astellas Pharma employee detained in Beijing is a senior employee [{label}]."),
    ("Who was the senior employee detained in Beijing?",
     "The senior employee detained in Beijing was a senior employee of a Japanese pharmaceutical firm [{label}]."),
])
def test_a_who_question_answered_without_any_new_name_is_declined(index_settings: Settings, use_model,
                                                                   question: str, reply: str) -> None:
    use_model(ScriptedChatModel(lambda s: reply.format(label=label_of(s, ASTELLAS))))
    assert Assistant(index_settings).ask(question).declined


def test_an_on_what_date_question_needs_a_day_not_just_a_month(index_settings: Settings, use_model) -> None:
    use_model(ScriptedChatModel(lambda s: f"Hayashi asked Qin to visit Japan in April [{label_of(s, APRIL_2)}]."))
    assert Assistant(index_settings).ask(APRIL_Q).declined
    use_model(ScriptedChatModel(lambda s: f"{APRIL_2} [{label_of(s, APRIL_2)}]."))
    assert not Assistant(index_settings).ask(APRIL_Q).declined


def test_a_who_question_answered_with_a_name_from_the_source_is_answered(index_settings: Settings,
                                                                          use_model) -> None:
    use_model(ScriptedChatModel(lambda s: "The senior employee detained in Beijing was a senior employee of "
                                          f"Astellas Pharma [{label_of(s, ASTELLAS)}]."))
    assert not Assistant(index_settings).ask("Who employed the senior employee detained in Beijing?").declined
