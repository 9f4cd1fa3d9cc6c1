"""No tuning constant outside settings: each threshold that was a literal is a setting, set by its
environment variable, and changing it changes what the code does."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from assistant.answering.chat import ChatSession, Turn
from assistant.answering.checks import Question
from assistant.answering.checks.policy import Judge, Judged
from assistant.backends.fakes import QueueChatModel
from assistant.backends.openai_chat import OpenAIChatModel
from assistant.indexing import copies
from assistant.indexing.build import build_index
from assistant.indexing.files import make_chunks
from assistant.indexing.store import fingerprint
from assistant.labels import Source
from assistant.news.timeline import TimelineEvent, _same_event
from assistant.search.retrieval import Retriever, _State
from assistant.settings import KEYS, Settings
from assistant.types import Citation, Passage
from conftest import TEST_DATA

# key -> (group, field, environment value, the value it reads as)
NEW_KEYS: dict[str, tuple[str, str, str, Any]] = {
    "clean_prose_min_chars": ("index", "clean_prose_min_chars", "150", 150),
    "clean_ui_min_hits": ("index", "clean_ui_min_hits", "4", 4),
    "copies_num_perm": ("index", "copies_num_perm", "128", 128),
    "copies_bands": ("index", "copies_bands", "32", 32),
    "copies_threshold": ("index", "copies_threshold", "0.7", 0.7),
    "top_logprobs": ("model", "top_logprobs", "5", 5),
    "rewrite_max_tokens": ("answer", "rewrite_max_tokens", "80", 80),
    "copy_same_text_min": ("retrieval", "copy_same_text_min", "0.8", 0.8),
    "evidence_sentence_min_terms": ("evidence", "sentence_min_terms", "2", 2),
    "cite_overlap_min": ("checks", "cite_overlap_min", "0.7", 0.7),
    "quote_wants_bonus": ("checks", "quote_wants_bonus", "0.25", 0.25),
    "as_of_same_min": ("checks", "as_of_same_min", "0.6", 0.6),
    "timeline_same_event_min": ("timeline", "same_event_min", "0.4", 0.4),
}
# The fingerprint of the default settings before these became settings: indexes on disk live in
# folders of this name, so it must not move.
DEFAULT_FINGERPRINT = "ff0033319b9d"


@pytest.mark.parametrize("key", sorted(NEW_KEYS))
def test_each_new_key_is_set_by_its_environment_variable_and_reaches_its_group(key: str) -> None:
    group, name, raw, value = NEW_KEYS[key]
    assert KEYS[key] == (group, name)
    var = Settings.env_names()[key]
    assert var == f"ASSISTANT_{key.upper()}"
    s = Settings.from_env({var: raw})
    assert getattr(getattr(s, group), name) == value
    assert s.public_dict()[key] == value and Settings().public_dict()[key] != value


def test_the_default_fingerprint_is_unchanged_and_a_changed_cleaning_or_copies_value_moves_it() -> None:
    base = Settings.from_env(environ={})
    assert fingerprint(base) == DEFAULT_FINGERPRINT
    moved = {fingerprint(base.with_(**{key: NEW_KEYS[key][3]}))
             for key in ("clean_prose_min_chars", "clean_ui_min_hits", "copies_num_perm", "copies_bands",
                         "copies_threshold")}
    assert DEFAULT_FINGERPRINT not in moved and len(moved) == 5
    # Settings that do not change what is stored keep the folder.
    assert fingerprint(base.with_(copy_same_text_min=0.9, top_logprobs=5)) == DEFAULT_FINGERPRINT


def test_the_cite_overlap_setting_decides_whether_a_source_carries_a_sentence() -> None:
    src = Source("S1", "a.txt", 0, 60, "The minister visited Tokyo and Osaka for trade talks.")
    q = Question("Where did the minister go?", "where")
    sentence = "The minister visited Tokyo and Beijing."  # minister, visit, tokyo of 4 content words: 0.75

    def cite(**overrides: Any) -> list[str]:
        judge = Judge(Settings().with_(**overrides), QueueChatModel(), ner=False)
        return judge.cite(q, sentence, [], [src], Judged())

    assert cite() == ["S1"]
    assert cite(cite_overlap_min=0.9) == []


def _passage(file: str, text: str, score: float) -> Passage:
    return Passage(file=file, start=0, end=len(text), text=text, score=score)


def test_the_copy_same_text_setting_decides_when_a_copy_gives_up_its_slot(tmp_path: Path) -> None:
    first = _passage("a.txt", "Ministers agreed a fisheries deal in Tokyo on Friday after long talks.", 2.0)
    # The same story in its copy, one word changed: content words share 7 of 9 (Jaccard 0.78).
    second = _passage("b.txt", "Ministers agreed a fisheries deal in Osaka on Friday after long talks.", 1.0)
    state = _State("v", {}, None, 2, {"a.txt": ["a.txt", "b.txt"]}, {"a.txt": "a.txt", "b.txt": "a.txt"})

    def kept(**overrides: Any) -> list[str]:
        retriever = Retriever(Settings().with_(index_dir=str(tmp_path), **overrides))
        return [p.file for p in retriever._one_slot_per_copy([first, second], state)]

    assert kept() == ["a.txt"]
    assert kept(copy_same_text_min=0.9) == ["a.txt", "b.txt"]


def test_the_copies_threshold_decides_which_signatures_group() -> None:
    base = list(range(400))
    same, half = copies.signature(base), copies.signature(base[:200] + list(range(1000, 1200)))
    sigs = np.stack([same, same, half])  # the third shares a third of its shingles (estimate below 0.55)
    assert len(set(copies.groups(sigs).tolist())) == 2
    assert len(set(copies.groups(sigs, threshold=0.1).tolist())) == 1
    # The signature size is a setting too.
    assert copies.signature(base, 128).shape == (128,)


def test_the_copies_threshold_reaches_the_copy_groups_an_index_stores(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    original = TEST_DATA / "bbc" / "business" / "001.txt"
    text = original.read_text(encoding="utf-8")
    shutil.copy(original, folder / "a.txt")
    shutil.copy(original, folder / "b.txt")
    lines = text.splitlines()
    (folder / "c.txt").write_text("\n".join(["Rewritten headline for the same story"] + lines[1:])
                                  + " The company declined to comment further.\n", encoding="utf-8")
    base = Settings.from_env(environ={}, index_dir=str(tmp_path / "index"), embedder="fake:hash")
    assert build_index(folder, settings=base).copy_groups == [["a.txt", "b.txt", "c.txt"]]
    # Only identical signatures group at 1.0: the edited copy stands alone (in an index of its own).
    strict = base.with_(copies_threshold=1.0)
    assert build_index(folder, settings=strict).copy_groups == [["a.txt", "b.txt"]]


def test_the_cleaning_settings_reach_the_chunks_an_index_stores() -> None:
    prose = ("The talks covered trade, fisheries and security, " * 6).strip()  # 299 characters
    promoted = f"Opening paragraph of the story.\n\nSponsored Content\n\nBuy our app now.\n\n{prose}\n"
    furniture = "Facebook Twitter\n\nThe story.\n"  # two share words

    def stored(text: str, **overrides: Any) -> str:
        return " ".join(c.text for c in make_chunks("a.txt", text, "h", "", "", Settings().with_(**overrides)))

    assert "The talks covered trade" in stored(promoted)
    assert "The talks covered trade" not in stored(promoted, clean_prose_min_chars=400)  # still the promotion
    assert "Facebook" in stored(furniture)
    assert "Facebook" not in stored(furniture, clean_ui_min_hits=2)


def test_the_same_event_setting_decides_when_two_timeline_events_merge() -> None:
    def event(text: str, file: str) -> TimelineEvent:
        return TimelineEvent(date="2024-03-01", precision="day", event=text, status="happened",
                             citations=[Citation(label="T1", file=file, start=0, end=len(text), quote=text)])

    a = event("Japan lifted the seafood import ban on Friday.", "a.txt")
    b = event("Japan lifted the seafood ban on Friday after talks.", "b.txt")  # 5 of 7 content words
    assert _same_event(a, b, Settings().timeline.same_event_min)
    assert not _same_event(a, b, 0.9)


class _RecordingModel:
    def __init__(self) -> None:
        self.max_tokens: list[int] = []

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0) -> Any:
        self.max_tokens.append(max_tokens)
        return SimpleNamespace(text="Who did Yoshimasa Hayashi meet?")


def test_the_rewrite_gets_the_tokens_its_setting_gives() -> None:
    model = _RecordingModel()
    session = ChatSession(SimpleNamespace(settings=Settings().with_(rewrite_max_tokens=80), llm=model))  # type: ignore[arg-type]
    session.turns.append(Turn("What did Hayashi announce?", "What did Hayashi announce?", "A visit [S1]."))
    assert session.standalone("who did he meet?") == "Who did Yoshimasa Hayashi meet?"
    assert model.max_tokens == [80]


def test_a_choice_asks_for_the_top_logprobs_its_setting_gives() -> None:
    sent: list[dict[str, Any]] = []

    def create(**request: Any) -> Any:
        sent.append(request)
        return SimpleNamespace(choices=[])

    settings = Settings().with_(openai_base_url="http://127.0.0.1:9/v1", top_logprobs=5)
    model = OpenAIChatModel("m", settings, compatible=True)
    model._client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    model.choose([{"role": "user", "content": "Yes or no?"}], ["YES", "NO"])
    assert sent[0]["top_logprobs"] == 5
