"""Citations belong to the code: labels resolve to verbatim file spans and unknown labels are dropped;
the cite check gives a sentence with no label (or a wrong one) the source that carries it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from prompt_format import prompt_sources

from assistant.answering.ask import DECLINE_TEXT, Assistant
from assistant.backends import get_llm
from assistant.backends.fakes import QueueChatModel
from assistant.answering.checks import Question, addresses, understand
from assistant.answering.checks.cite import carried, labels_for
from assistant.answering.citations import resolve
from assistant.labels import Source
from assistant.indexing.build import build_index
from assistant.settings import Settings

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


# --- resolve(): label resolution on real file spans; checks.cite: which source carries a sentence ---


def q(text: str = "What did Hayashi and Qin discuss?") -> Question:
    return understand(text, use_ner=True)


def cite_for(question: Question, sources: list[Source]):
    """The cite callback ask() hands to resolve(): the named check, NER on."""
    return lambda sentence, labels: labels_for(question, sentence, labels, sources, use_ner=True)


def test_uncited_sentence_combining_two_sources_gets_inferred_citations_to_both() -> None:
    # The real 1.5B model's reply to "On what date did Hayashi and Qin Gang meet in Beijing?":
    # names and place come from one passage, the date from the other. Uncited, it must not be
    # thrown away (the answer was declined).
    sources = [
        source("S1", "000_ab41fa749cc5eede.txt", "Chinese Foreign Minister Qin Gang told"),
        april_2_source("S2"),
    ]
    reply = "Hayashi and Qin Gang met in Beijing on April 2, according to the source."
    out = resolve(reply, sources, cite=cite_for(q("When did the two foreign ministers meet?"), sources))

    assert out.uncited == []
    assert sorted((c.label, c.inferred) for c in out.citations) == [("S1", True), ("S2", True)]
    for c in out.citations:
        assert c.quote == file_text(c.file)[c.start:c.end]
    # Names the question states need no source: then the passage with the date carries it alone.
    stated = q("On what date did Hayashi and Qin Gang meet in Beijing?")
    assert [c.label for c in resolve(reply, sources, cite=cite_for(stated, sources)).citations] == ["S2"]
    # Without the check nothing is inferred: the sentence stays uncited.
    assert resolve("Hayashi and Qin Gang met in Beijing on April 2.", sources).uncited != []


def test_known_labels_map_to_verbatim_quotes_and_unknown_labels_are_dropped() -> None:
    src = april_2_source("S1")
    out = resolve(f"{APRIL_2} [S1][S9].", [src])

    assert out.text == f"{APRIL_2} [S1]."
    assert [(c.label, c.inferred) for c in out.citations] == [("S1", False)]
    c = out.citations[0]
    assert c.quote == file_text(c.file)[c.start:c.end] and APRIL_2 in c.quote


@pytest.mark.parametrize("reply", [
    f"{APRIL_2}.\n[S1]",              # the label on a line of its own, as the 1.5B model wrote for q050
    f"{APRIL_2} [S1].\n\n[S1][S2]",
    "[S1]",
], ids=["label-on-next-line", "labels-only-paragraph", "only-a-label"])
def test_a_line_holding_only_labels_does_not_break_resolution(reply: str) -> None:
    out = resolve(reply, [april_2_source("S1")])

    assert "[S2]" not in out.text
    if out.cited_sentences:
        assert [c.label for c in out.citations] == ["S1"]
        assert out.text.endswith("[S1].")


def test_a_last_sentence_cut_off_by_the_token_limit_is_dropped() -> None:
    src = april_2_source("S1")
    out = resolve(f"{APRIL_2} [S1]. Hayashi and Qin Ga", [src])
    assert out.text == f"{APRIL_2} [S1]." and out.cited_sentences == [f"{APRIL_2} [S1]."] and not out.uncited
    # A finished last sentence without a label stays (for the cite check), and so does a lone
    # unpunctuated answer: only a fragment after complete sentences is taken as cut off.
    assert resolve(f"{APRIL_2} [S1]. Hayashi met Qin Gang.", [src]).text.endswith("Hayashi met Qin Gang.")
    assert resolve("Hayashi met Qin Gang on April 2", [src]).text.startswith("Hayashi met Qin Gang on April 2")


def test_uncited_sentence_no_source_carries_gets_no_citation() -> None:
    sources = [nato_source("S1"), april_2_source("S2")]
    invented = "The two ministers also signed a free trade agreement in Paris."
    out = resolve(f"{APRIL_2} [S2]. {invented}", sources, cite=cite_for(q(), sources))

    assert out.uncited == [invented]
    assert [c.label for c in out.citations] == ["S2"]


def test_a_different_date_or_number_is_not_carried_by_the_source() -> None:
    src, hotline = april_2_source("S1"), hotline_source("S1")
    assert carried(q(), "During their meeting on April 2, Hayashi asked Qin to visit Japan.", [src], True)
    assert not carried(q(), "During their meeting on April 1, Hayashi asked Qin to visit Japan.", [src], True)
    assert carried(q(), "The defense hotline was set up 16 years after first agreeing on it.", [hotline], True)
    assert not carried(q(), "The defense hotline was set up 15 years after first agreeing on it.", [hotline], True)


def test_a_name_missing_from_the_source_is_not_carried_and_may_as_a_verb_is_no_month() -> None:
    src = april_2_source()
    assert carried(q(), "Hayashi asked Qin to visit Japan.", [src], True)
    assert not carried(q(), "Hayashi asked Wang Yi to visit Japan.", [src], True)
    # "may" is a verb here, not the month: NER reads no date in it.
    assert carried(q(), "Hayashi asked Qin, who may visit Japan.", [src], True)


def test_the_publication_date_of_a_source_counts_as_its_evidence() -> None:
    # 000 is dated 2023-05: "in May 2023" is backed by the date even though the text lacks it.
    assert carried(q(), "In May 2023, Hayashi asked Qin to visit Japan during their meeting on April 2.",
                   [april_2_source("S1")], True)


def dialogue_source(label: str = "S1") -> Source:
    return source(label, "000_ab41fa749cc5eede.txt", "Tokyo and Beijing are also considering resuming")


def test_names_the_question_states_need_no_source_but_dates_it_states_do() -> None:
    # The passage says "Tokyo and Beijing", never "Japan-China": repeating the question's own
    # name for the dialogue is not a claim the source must carry...
    question = q("When was the Japan-China high-level economic dialogue last held?")
    claim = "The Japan-China high-level economic dialogue was last held in 2019."
    assert carried(question, claim, [dialogue_source()], True)
    assert not carried(q("When was the dialogue last held?"), claim, [dialogue_source()], True)
    # ...but a date taken from the question must still be in the source (000 is a 2023 article).
    dated = q("Who met in December 2024 about the Japan-China high-level economic dialogue?")
    assert not carried(dated, "Hayashi and Qin met in December 2024 about the Japan-China dialogue.",
                       [april_2_source()], True)


def test_next_year_in_a_dated_article_carries_the_year_after_its_date() -> None:
    src = source("S1", "004_749f0bb3dcd254b9.txt", "Wang Yi is set to visit Japan next year")
    assert DATES["004_749f0bb3dcd254b9.txt"].startswith("2024")
    assert carried(q(), "Wang Yi is set to visit Japan in 2025.", [src], True)
    assert not carried(q(), "Wang Yi is set to visit Japan in 2026.", [src], True)


def test_a_cited_source_that_does_not_carry_the_sentence_is_completed_by_another() -> None:
    sources = [source("S1", "000_ab41fa749cc5eede.txt", "Chinese Foreign Minister Qin Gang told"),
               april_2_source("S2")]
    out = resolve("Hayashi and Qin Gang met in Beijing on April 2 [S1].", sources,
                  cite=cite_for(q("When did the two foreign ministers meet?"), sources))
    assert [(c.label, c.inferred) for c in out.citations] == [("S1", False), ("S2", True)]
    assert out.text.endswith("[S1][S2].")


@pytest.mark.parametrize("reply", [
    f"According to [S1], {APRIL_2}.",
    f"According to source [S1], {APRIL_2}.",
    f"Source [S1] states that {APRIL_2}.",
])
def test_a_lead_in_wrapped_around_a_label_is_moved_to_the_end(reply: str) -> None:
    out = resolve(reply, [april_2_source()])
    assert out.text == f"{APRIL_2} [S1]."
    assert [c.label for c in out.citations] == ["S1"]


# --- through Assistant.ask: the model only ever sees labels --------------------------------------
#
# The scripted replies come from the queue-style fake (fake:queue): a test reads the labelled sources
# the prompt will show (Assistant.gather), enqueues the model's replies written against those labels,
# and checks afterwards that the prompt did show those sources. Per ask with every check on the model
# is called: choose (the answerable gate), complete (the answer), choose (support) per cited sentence.

# Tests about label resolution switch the model-judged checks off, so only the reply is queued.
RESOLUTION_ONLY = frozenset({"answerable", "supported", "picked"})

Sources = dict[str, tuple[str, str]]


def label_of(sources: Sources, words: str) -> str:
    """The label of the source holding these words (whitespace-insensitive)."""
    for label, (_name, text) in sources.items():
        if " ".join(words.split()) in " ".join(text.split()):
            return label
    raise AssertionError(f"no source holds {words!r}: {sorted(sources)}")


def sources_for(settings: Settings, question: str) -> Sources:
    """The labelled sources (label -> (file, text)) the answer prompt for this question will show."""
    return {s.label: (s.file, " ".join(s.text.split())) for s in Assistant(settings).gather(question).sources}


def shown(model: QueueChatModel) -> Sources:
    """The labelled sources of the last answer prompt the model was sent."""
    return {label: (name, text) for label, name, _date, text in prompt_sources(model.requests[-1][-1]["content"])}


@pytest.fixture(scope="module")
def index_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("citations")
    shutil.copytree(ARTICLES, root / "articles")
    # The pick check is off: these tests are about citations, and the extractive fake cannot pick the
    # number of a computed answer ("how many years after"); the pick has its own tests (test_checks.py).
    settings = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"),
                                 embedder="fake:hash", llm="fake:extractive", checks_off=frozenset({"picked"}))
    build_index(settings.index.corpus_dir, settings=settings)
    return settings


@pytest.fixture
def queue_settings(index_settings: Settings) -> Settings:
    """The test index, answered by the queue-style fake with every check on."""
    return index_settings.with_(llm="fake:queue", checks_off=frozenset({"picked"}))  # the pick has its own tests


@pytest.fixture
def resolution_settings(queue_settings: Settings) -> Settings:
    """The queue-style fake with the model-judged checks off: only the answer reply is queued."""
    return queue_settings.with_(checks_off=RESOLUTION_ONLY)


@pytest.fixture
def model(queue_settings: Settings, fresh_caches: None) -> Iterator[QueueChatModel]:
    """The one QueueChatModel get_llm hands the Assistant for these settings, empty at the start;
    at the end every queued reply must have been asked for."""
    llm = get_llm(queue_settings)
    assert isinstance(llm, QueueChatModel)
    llm.reset()
    yield llm
    assert not llm.replies and not llm.choices, "the model was called fewer times than the test queued"


ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
APRIL_Q = "On what date did Hayashi and Qin Gang meet in Beijing?"
ASTELLAS_SENTENCE = f"{ASTELLAS} of Japanese pharmaceutical firm Astellas Pharma"


@pytest.mark.parametrize("question", [
    ASTELLAS_Q, APRIL_Q,
    "What did Iwaya say about his meetings with Li Qiang?",
    "How many years after first agreeing was the defense hotline set up?",
])
def test_every_citation_of_an_answer_quotes_the_real_file_and_names_the_labelled_source(
        index_settings: Settings, fresh_caches: None, question: str) -> None:
    answer = Assistant(index_settings).ask(question)

    assert not answer.declined
    assert answer.citations
    for c in answer.citations:
        assert c.quote == (Path(index_settings.index.corpus_dir) / c.file).read_text(encoding="utf-8")[c.start:c.end]
        assert f"[{c.label}]" in answer.answer
        assert set(c.to_dict()) == {"label", "file", "start", "end", "quote", "inferred", "copies"}


def test_the_test_gets_the_same_queue_model_the_assistant_answers_with(resolution_settings: Settings,
                                                                       model: QueueChatModel) -> None:
    assert get_llm(resolution_settings) is model, "checks_off does not change which model is used"
    model.enqueue("NOT_IN_SOURCES")
    answer = Assistant(resolution_settings).ask(ASTELLAS_Q)

    assert len(model.requests) == 1 and f"Question: {ASTELLAS_Q}" in model.requests[0][-1]["content"]
    assert answer.declined and answer.decline_reason == "model_declined"


def test_a_label_the_model_invents_never_reaches_the_answer(resolution_settings: Settings,
                                                           model: QueueChatModel) -> None:
    sources = sources_for(resolution_settings, ASTELLAS_Q)
    label = label_of(sources, ASTELLAS)
    assert "S42" not in sources
    model.enqueue(f"{ASTELLAS_SENTENCE} [{label}][S42].")
    answer = Assistant(resolution_settings).ask(ASTELLAS_Q)

    assert shown(model) == sources
    assert "[S42]" not in answer.answer
    assert {c.label for c in answer.citations} == {label}
    assert answer.citations[0].file == "001_e2d5a160401ece19.txt"


def test_an_uncited_copied_sentence_is_cited_by_inference_in_the_answer(resolution_settings: Settings,
                                                                      model: QueueChatModel) -> None:
    model.enqueue(f"{ASTELLAS_SENTENCE}.")
    answer = Assistant(resolution_settings).ask(ASTELLAS_Q)

    assert not answer.declined
    assert [(c.file, c.inferred) for c in answer.citations] == [("001_e2d5a160401ece19.txt", True)]
    assert re.search(r"Astellas Pharma \[S\d+\]\.$", answer.answer)


def test_an_invented_uncited_sentence_is_reported_among_uncited_sentences(resolution_settings: Settings,
                                                                         model: QueueChatModel) -> None:
    invented = "The employee was released on bail in Paris."
    label = label_of(sources_for(resolution_settings, ASTELLAS_Q), ASTELLAS)
    model.enqueue(f"{ASTELLAS_SENTENCE} [{label}]. {invented}")
    answer = Assistant(resolution_settings).ask(ASTELLAS_Q)

    assert not answer.declined
    assert answer.uncited_sentences == [invented]
    assert answer.to_dict()["uncited_sentences"] == [invented]
    assert "Paris" not in answer.answer, "a sentence no source supports is withheld from the answer"


def test_a_reply_ending_in_a_bare_label_line_is_answered_not_crashed(resolution_settings: Settings,
                                                                     model: QueueChatModel) -> None:
    label = label_of(sources_for(resolution_settings, ASTELLAS_Q), ASTELLAS)
    model.enqueue(f"{ASTELLAS_SENTENCE}.\n[{label}]")
    answer = Assistant(resolution_settings).ask(ASTELLAS_Q)

    assert not answer.declined and "Astellas" in answer.answer
    assert [c.file for c in answer.citations] == ["001_e2d5a160401ece19.txt"]


# --- the supported check: one model judgement per cited sentence ---------------------------------------

def _without_space_before_stop(sentence: str) -> str:
    return re.sub(r"\s+([.!?])$", r"\1", sentence)


def queue_wrong_place_answer(settings: Settings, model: QueueChatModel) -> tuple[str, str]:
    """Queue an answer to APRIL_Q: the April 2 sentence (judged supported), then a wrong place (judged
    not; a place, not a figure, so the figure check lets it through to the model). Returns the label
    cited and the wrong sentence."""
    label = label_of(sources_for(settings, APRIL_Q), APRIL_2)
    model.enqueue_choice(label[1:], 0.95)
    model.enqueue(f"{APRIL_2} [{label}]. Hayashi and Qin met in Osaka [{label}].")
    model.enqueue_choice("yes", 0.9).enqueue_choice("no", 0.9)
    return label, "Hayashi and Qin met in Osaka."


def test_a_sentence_the_support_check_rejects_is_withheld_and_listed_while_the_rest_is_answered(
        queue_settings: Settings, model: QueueChatModel) -> None:
    label, bad = queue_wrong_place_answer(queue_settings, model)
    answer = Assistant(queue_settings).ask(APRIL_Q)

    # One gate question, then one support question per cited sentence, in order, naming its label.
    gate, first, second = model.choice_requests
    assert "which source states the answer" in gate[-1]["content"]
    assert APRIL_2 in first[-1]["content"] and f"[{label}]" in first[-1]["content"]
    assert "Hayashi and Qin met in Osaka" in second[-1]["content"] and f"[{label}]" in second[-1]["content"]
    assert not answer.declined and answer.decline_reason == ""
    assert [_without_space_before_stop(s) for s in answer.unsupported_sentences] == [bad]
    assert "Osaka" not in answer.answer and "April 2" in answer.answer
    judged = [(v.passed, v.score) for v in answer.verdicts if v.name == "supported"]
    assert judged == [(True, pytest.approx(0.9)), (False, pytest.approx(0.1))]
    assert "Osaka" in answer.draft, "the draft keeps every sentence the model wrote"


def test_a_withheld_sentence_is_listed_as_written_without_a_space_before_its_stop(
        queue_settings: Settings, model: QueueChatModel) -> None:
    _label, bad = queue_wrong_place_answer(queue_settings, model)
    answer = Assistant(queue_settings).ask(APRIL_Q)

    assert answer.unsupported_sentences == [bad]


def test_an_answer_whose_every_sentence_the_support_check_rejects_is_declined(queue_settings: Settings,
                                                                            model: QueueChatModel) -> None:
    label = label_of(sources_for(queue_settings, ASTELLAS_Q), ASTELLAS)
    model.enqueue_choice(label[1:], 0.95)
    model.enqueue(f"The employee was released on bail in Paris [{label}].")
    model.enqueue_choice("no", 0.8)
    answer = Assistant(queue_settings).ask(ASTELLAS_Q)

    assert answer.declined
    assert answer.answer == DECLINE_TEXT
    assert answer.citations == []
    assert answer.decline_reason == "supported_any"
    assert "Paris" in answer.draft


# --- the addresses check: the answer holds an entity of the kind asked for (spaCy NER) ---------------------

WHO_Q = "Who employed the senior employee detained in Beijing?"
HOTLINE_Q = "How many years after first agreeing was the defense hotline set up?"


@pytest.mark.parametrize("question, answer, passes", [
    (WHO_Q, f"{ASTELLAS_SENTENCE}.", True),
    # "Beijing" is a name, but the question's own: it does not say who.
    (WHO_Q, "The senior employee detained in Beijing was a senior employee.", False),
    (APRIL_Q, f"{APRIL_2}.", True),
    (APRIL_Q, "Hayashi asked Qin to visit Japan.", False),
    (HOTLINE_Q, "The hotline was set up 16 years after first agreeing on it.", True),
    # "first" is the question's own ordinal, not a number the answer gives.
    (HOTLINE_Q, "The hotline was set up years after first agreeing on it.", False),
    ("What did Iwaya say about his meetings with Li Qiang?", "He said they were productive.", True),
], ids=["who-name", "who-only-the-questions-name", "when-date", "when-no-date", "how-many-number",
        "how-many-only-the-questions-ordinal", "what-any-content"])
def test_the_addresses_check_wants_a_new_entity_of_the_kind_asked_for(question: str, answer: str,
                                                                      passes: bool) -> None:
    verdict = addresses(understand(question), f"{answer[:-1]} [S1].")

    assert verdict.name == "addresses"
    assert verdict.passed is passes, verdict.reason


def queue_answer(settings: Settings, model: QueueChatModel, question: str, reply: str, cite: str) -> None:
    """Queue the gate's pick, the reply (`{label}`: the source holding `cite`) and its support."""
    label = label_of(sources_for(settings, question), cite)
    model.enqueue_choice(label[1:], 0.95)
    model.enqueue(reply.format(label=label))
    model.enqueue_choice("yes", 0.95)


def test_a_who_question_answered_without_a_new_name_is_declined_by_the_addresses_check(
        queue_settings: Settings, model: QueueChatModel) -> None:
    question = "Who was the senior employee detained in Beijing?"
    queue_answer(queue_settings, model, question,
                 "The senior employee detained in Beijing was a senior employee [{label}].", ASTELLAS)
    answer = Assistant(queue_settings).ask(question)

    assert answer.declined and answer.answer == DECLINE_TEXT
    assert answer.decline_reason == "addresses"
    failed = [v for v in answer.verdicts if not v.passed]
    assert [v.name for v in failed] == ["addresses"] and "name" in failed[0].reason


def test_a_who_question_answered_with_a_name_from_the_source_is_answered(queue_settings: Settings,
                                                                          model: QueueChatModel) -> None:
    queue_answer(queue_settings, model, WHO_Q,
                 "The senior employee detained in Beijing was a senior employee of Astellas Pharma [{label}].",
                 ASTELLAS)
    answer = Assistant(queue_settings).ask(WHO_Q)

    assert not answer.declined and "Astellas Pharma" in answer.answer
    assert [v.passed for v in answer.verdicts if v.name == "addresses"] == [True]


def test_a_when_question_needs_a_date_in_the_answer(queue_settings: Settings, model: QueueChatModel) -> None:
    queue_answer(queue_settings, model, APRIL_Q, "Hayashi asked Qin to visit Japan [{label}].", APRIL_2)
    undated = Assistant(queue_settings).ask(APRIL_Q)
    queue_answer(queue_settings, model, APRIL_Q, f"{APRIL_2} [{{label}}].", APRIL_2)
    dated = Assistant(queue_settings).ask(APRIL_Q)

    assert undated.declined and undated.decline_reason == "addresses"
    assert "date" in next(v.reason for v in undated.verdicts if v.name == "addresses")
    assert not dated.declined and "April 2" in dated.answer


def test_a_number_in_words_does_not_stop_a_citation_but_a_figure_in_digits_must_match() -> None:
    src = hotline_source("S1")
    question = q("How long after first agreeing was the hotline set up?")
    # "the two governments" is wording, not a figure the source must give ("16 years" is).
    assert carried(question, "The two governments set up the hotline 16 years after first agreeing on it.", [src], True)
    assert not carried(question, "The two governments set up the hotline 61 years after first agreeing on it.",
                       [src], True)
