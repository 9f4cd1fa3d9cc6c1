"""Plain data types shared across layers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """One indexed passage with offsets into its source text."""

    id: str
    file: str
    text: str
    start: int
    end: int
    chunk_no: int
    title: str = ""
    date: str = ""
    date_epoch: int = 0
    content_hash: str = ""


@dataclass(frozen=True)
class Passage:
    """A retrieved passage with its score."""

    file: str
    start: int
    end: int
    text: str
    score: float
    chunk_id: str = ""
    title: str = ""
    date: str = ""
    # Other files carrying the same article (its copy group), when there are any.
    copies: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` output."""
        out = {"file": self.file, "score": round(self.score, 6), "start": self.start,
               "end": self.end, "text": self.text}
        if self.copies:
            out["copies"] = list(self.copies)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Passage":
        """Rebuild from `to_dict()` output (e.g. a server's JSON)."""
        return cls(file=str(data["file"]), start=int(data["start"]), end=int(data["end"]),
                   text=str(data.get("text", "")), score=float(data.get("score", 0.0)),
                   chunk_id=str(data.get("chunk_id", "")), title=str(data.get("title", "")),
                   date=str(data.get("date", "")), copies=tuple(data.get("copies") or ()))


@dataclass(frozen=True)
class Citation:
    """A citation label resolved by code to a verbatim quote in a file."""

    label: str
    file: str
    start: int
    end: int
    quote: str
    inferred: bool = False
    # Other files that carry the same article (one representative is cited; the copies are listed).
    copies: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` output."""
        out = asdict(self)
        out["copies"] = list(self.copies)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Citation":
        """Rebuild from `to_dict()` output."""
        return cls(label=str(data["label"]), file=str(data["file"]), start=int(data["start"]),
                   end=int(data["end"]), quote=str(data.get("quote", "")), inferred=bool(data.get("inferred", False)),
                   copies=tuple(data.get("copies") or ()))


class Check(StrEnum):
    """The name of every verdict an answer can get. The checks (`CHECKS`) are the first seven and `subject`, each of
    which `ASSISTANT_CHECKS_OFF` can switch off for an ablation; the rest record how the pipeline
    itself ended or what a traced run measured. Members are strings, so records stay plain JSON."""

    ENTITIES = "entities"
    ANSWERABLE = "answerable"
    NUMBERS = "numbers"
    SUPPORTED = "supported"
    ADDRESSES = "addresses"
    PICKED = "picked"
    CITE = "cite"  # a sentence the model left unlabelled (or mis-cited) gets the source that carries it
    SUBJECT = "subject"  # the articles the answer cites name the people, organisations, events asked about
    RETRIEVAL = "retrieval"  # no passage matched
    MODEL_DECLINED = "model_declined"  # the model wrote that the sources do not say
    SUPPORTED_ANY = "supported_any"  # every sentence was withheld
    ADDRESSES_DRAFT = "addresses_draft"  # traced: the answer-type verdict on the draft


CHECKS = (Check.ENTITIES, Check.ANSWERABLE, Check.NUMBERS, Check.SUPPORTED, Check.ADDRESSES, Check.PICKED,
          Check.CITE, Check.SUBJECT)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: `passed` False declines (or withholds a sentence, for `supported`)."""

    name: str
    passed: bool
    score: float | None
    reason: str
    # The threshold the score was compared with (None for checks without one).
    threshold: float | None = None
    # For per-sentence checks: the sentence judged.
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` and eval records."""
        out = asdict(self)
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


@dataclass
class Answer:
    """The result of one `ask()`: text, citations, decline flag, sources and timings."""

    question: str
    answer: str
    declined: bool
    citations: list[Citation] = field(default_factory=list)
    sources: list[Passage] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    unsupported_sentences: list[str] = field(default_factory=list)
    uncited_sentences: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    standalone_question: str = ""
    # The check that declined ("answerable", "entities", "supported_any", "addresses", "retrieval",
    # "model_declined"), or "" when answered; every check's verdict, in the order run.
    decline_reason: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    # Every cited sentence the model wrote, before sentences were withheld (for ablations).
    draft: str = ""
    # Facts about the answer a reader should know (e.g. a cited article's date is unknown).
    notes: list[str] = field(default_factory=list)
    # Cited sources counted once per copy group (wire copy carried by several files is one source).
    independent_sources: int = 0
    # What is needed to check the answer later: index fingerprint and version, each cited file's
    # hash, the model, the embedder and a hash of the prompts (assistant/answering/provenance.py).
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` output."""
        return {
            "question": self.question,
            "answer": self.answer,
            "declined": self.declined,
            "citations": [c.to_dict() for c in self.citations],
            "sources": [s.to_dict() for s in self.sources],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "unsupported_sentences": self.unsupported_sentences,
            "uncited_sentences": self.uncited_sentences,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "decline_reason": self.decline_reason,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "notes": self.notes,
            "standalone_question": self.standalone_question,
            "independent_sources": self.independent_sources,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
        """Rebuild from `to_dict()` output (a server's reply), so it prints like a local answer."""
        from dataclasses import fields as dc_fields

        names = {f.name for f in dc_fields(Verdict)}
        return cls(
            question=str(data.get("question", "")), answer=str(data.get("answer", "")),
            declined=bool(data.get("declined", False)),
            citations=[Citation.from_dict(c) for c in data.get("citations") or []],
            sources=[Passage.from_dict(p) for p in data.get("sources") or []],
            timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
            unsupported_sentences=list(data.get("unsupported_sentences") or []),
            uncited_sentences=list(data.get("uncited_sentences") or []),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            standalone_question=str(data.get("standalone_question", "")),
            decline_reason=str(data.get("decline_reason", "")),
            verdicts=[Verdict(**{k: v for k, v in d.items() if k in names}) for d in data.get("verdicts") or []],
            notes=list(data.get("notes") or []),
            independent_sources=int(data.get("independent_sources") or 0),
            provenance=dict(data.get("provenance") or {}),
        )


@dataclass
class SkippedFile:
    """A file the indexer did not index, and why."""

    file: str
    reason: str


@dataclass
class IndexReport:
    """What one indexing run did; counts are files, `chunks` is the index total."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    embedded_chunks: int = 0
    index_path: str = ""
    seconds: float = 0.0
    # Files that carry the same article, one list per copy group (representative first).
    copy_groups: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` shape fixed by the CLI contract."""
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "chunks": self.chunks,
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
            "copy_groups": self.copy_groups,
        }


@dataclass
class Choice:
    """A constrained one-option reply: the option chosen and the model's probability of each option."""

    option: str
    probs: dict[str, float] = field(default_factory=dict)
    # False when the backend returned no token probabilities (probs then put 1.0 on the choice).
    calibrated: bool = True

    def p(self, option: str) -> float:
        """Probability of one option (0 when the model gave it none)."""
        return self.probs.get(option, 0.0)


@dataclass
class Completion:
    """Text returned by a chat model with token usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
