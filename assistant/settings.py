"""Settings: the only module that reads the environment (prefix ASSISTANT_)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .errors import ConfigError
from .types import CHECKS

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def resource_dir(name: str) -> Path:
    """Locate a shipped folder (prompts, articles): inside the wheel, else in the checkout."""
    for candidate in (PACKAGE_DIR / "_data" / name, REPO_DIR / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"shipped folder '{name}' not found next to the package; reinstall the assistant")


def _default_corpus() -> str:
    try:
        return str(resource_dir("articles"))
    except ConfigError:
        return "articles"


@dataclass(frozen=True)
class IndexSettings:
    """Where articles come from, how they are cut and embedded, and where the index lives."""

    PREFIX: ClassVar[str] = ""
    corpus_dir: str = field(default_factory=_default_corpus)
    index_dir: str = "index"
    # A Chroma server (`chroma run`) instead of local files.
    chroma_url: str = ""
    collection: str = "articles"
    embedder: str = "local:all-MiniLM-L6-v2"
    # Chunking (characters; sentences are never split unless longer than chunk_size).
    chunk_size: int = 700
    chunk_overlap: int = 150
    max_file_bytes: int = 5_000_000
    embed_batch_size: int = 64
    # Cleaning (assistant/reading/cleaning.py), set by hand when cleaning was written (d74df29), not fitted: a
    # line of at least clean_prose_min_chars characters is article prose (it ends a promotional block,
    # and a promotional phrase inside it is kept), and a line naming clean_ui_min_hits or more share
    # buttons and icons ("Facebook", "Twitter", "Print") is page furniture unless it reads as a sentence.
    clean_prose_min_chars: int = 200
    clean_ui_min_hits: int = 3
    # Copies (assistant/indexing/copies.py): MinHash signatures of copies_num_perm values, cut into
    # copies_bands bands (21 bands of 3 rows: a pair at Jaccard 0.5 is a candidate with
    # p = 1 - (1 - 0.5^3)^21 = 0.94, at 0.7 p > 0.999); a candidate pair whose estimated Jaccard of
    # 3-shingles reaches copies_threshold is one article (benchmarks/COPIES.md has the BBC measurement:
    # 0.5 keeps all 98 byte-identical groups whole and 126 of 129 same-title groups).
    # The cleaning and copies settings change what an index holds, so a value other than its default
    # is part of the index fingerprint (assistant/indexing/store.py).
    copies_num_perm: int = 64
    copies_bands: int = 21
    copies_threshold: float = 0.5


@dataclass(frozen=True)
class ModelSettings:
    """Which chat model answers, and how it is reached or run (a change here builds another model)."""

    PREFIX: ClassVar[str] = ""
    llm: str = "local:qwen2.5-coder-1.5b"
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    request_timeout: float = 60.0
    max_retries: int = 3
    # Downloaded and exported model files (chat weights, embedder variants).
    cache_dir: str = field(default_factory=lambda: str(Path.home() / ".cache" / "assistant"))
    # Local model runtime.
    n_threads: int = 2
    n_ctx: int = 4096
    # llama.cpp n-gram speculative decoding for the local model (benchmarks/RESULTS.md, "Speculative").
    speculative: bool = False
    # Log-probabilities asked for the first token of a choice (the checks' P(NONE), P(yes)); an option
    # whose first token is not among them gets no probability. 20 is the most the OpenAI API returns.
    top_logprobs: int = 20


@dataclass(frozen=True)
class AnswerSettings:
    """How an answer is written: its length, sampling, and the chat history the model sees."""

    PREFIX: ClassVar[str] = ""
    max_answer_tokens: int = 160
    temperature: float = 0.0
    # Chat history kept for rewriting a follow-up (older turns are dropped), each side of a turn cut to
    # history_turn_chars characters.
    history_turns: int = 4
    history_turn_chars: int = 400
    # Tokens for the rewritten follow-up (one question; a longer reply is an answer, not a rewrite).
    rewrite_max_tokens: int = 60


@dataclass(frozen=True)
class RetrievalSettings:
    """The search: dense and keyword retrieval fused, and which retrieved chunks feed the evidence."""

    PREFIX: ClassVar[str] = ""
    top_k: int = 4
    dense_k: int = 20
    bm25_k: int = 20
    rrf_k: int = 60
    # Files carrying the same article (near-duplicate copies, assistant/indexing/copies.py) share one
    # retrieval slot; the representative is cited and its copies listed.
    group_copies: bool = True
    # One search per question, sliced: the first `candidate_chunks` feed the prompt, all of them the
    # entities check (a name the question gives must be in one of these).
    search_chunks: int = 20
    candidate_chunks: int = 8
    candidate_files: int = 0  # the best this many files offer every sentence, not only the matched chunks
    # A question about now: the newest dated candidate sentence gains this much ranking score (the
    # ranker's logit scale), and a note says so when the newest article is older than stale_days.
    recency_weight: float = 1.0
    stale_days: int = 120
    # A passage of a copy group whose content words share at least this Jaccard with a better-ranked
    # passage of the same group is the same text, and gives up its slot (set by hand, as the copies
    # threshold, copies_threshold; not fitted).
    copy_same_text_min: float = 0.5


@dataclass(frozen=True)
class EvidenceSettings:
    """The evidence budget in prompt tokens (characters / 4), spent on the best sentences of the
    first `candidate_chunks` retrieved chunks, each with `after` sentences after it and, budget
    allowing, `before` before it, from at most `files` files. The local model reads ~70 tokens/s, so
    100 tokens cost ~1.4 s. Fitted on BBC dev (evals/README.md, "Evidence")."""

    PREFIX: ClassVar[str] = "evidence_"
    tokens: int = 600
    after: int = 1
    after_explain: int = 2  # a why or how question needs what follows the event
    # ...but only when the pick and the sentence after it fit in this many tokens together (0: always).
    # At 450 to 900 evidence tokens it raised the plain sample's all-evidence recall by 0.03 to 0.09
    # (long sentences: a pick with its follower cost twice a BBC pick) and moved BBC dev by one case
    # either way (600 tokens: 0.918 all / 1.000 any, against 0.928 / 0.990; evals/README.md).
    after_max_tokens: int = 60
    new_file_bonus: float = 1.0
    before: int = 0
    files: int = 4
    # A candidate sentence has at least this many content words: shorter is a fragment (a stray code
    # or byline left by a planted line), not evidence. Set by hand (cf827f7), not fitted.
    sentence_min_terms: int = 3
    # The sentence score's feature weights: a logistic regression fitted on BBC dev (3,900 candidates,
    # 140 gold; `python -m assistant.evaluate.evidence --fit`, evals/README.md "Evidence"). In the
    # environment: a JSON object, e.g. ASSISTANT_EVIDENCE_WEIGHTS='{"dense": 3.0, "bias": -7}' (a
    # feature left out weighs 0).
    weights: tuple[tuple[str, float], ...] = (
        ("dense", 2.946), ("coverage", 2.746), ("chunk_rank", 1.868), ("file_rank", 1.04), ("in_chunk", -0.01),
        ("neighbour", 0.336), ("lead", -1.108), ("bias", -6.905))
    # Characters per prompt token, for the budget (Qwen's tokenizer on English news: about 4).
    chars_per_token: float = 4.0


@dataclass(frozen=True)
class CheckSettings:
    """The answering checks (assistant/answering/checks). Thresholds were fitted on the BBC dev split
    with the default local model (evals/README.md, "Calibration"); other models should refit them."""

    PREFIX: ClassVar[str] = ""
    # Decline when the model's probability that no source states the answer reaches this. On the
    # 64-question BBC dev subset (2026-12-02) every value from 0.25 to 1.0 gave the same outcomes
    # (correct 0.643, wrong declines 0.018, unanswerable declined 0.375); 0.2 lost two answers and
    # declined no more unanswerable questions. The 1.5B model's P(NONE) separates poorly.
    gate_none_max: float = 0.3
    # Withhold an answer sentence when the model's probability that its source states it is below this.
    # Same dev subset: 0.05-0.7 gave identical outcomes; 0.75 lost one answer, 0.85 lost 7 for 2 declines.
    support_min: float = 0.5
    # The pick check (checks.picked): asked for the answer's name, date or number alone, under a grammar
    # over the sources' entities, the model's P(NONE) at or above this declines, and so does a pick
    # the answer does not give. Off by default: on 79 traced BBC dev cases it declined 7 more answerable
    # questions to stop 13 unanswerable ones (evals/README.md, "Calibrated declines").
    pick_check: bool = False
    pick_none_max: float = 0.5
    # The pick check offers the model at most this many of the sources' entities.
    pick_max_options: int = 24
    # Sources the gate gives at least this probability are compared for disagreeing values.
    conflict_min_p: float = 0.15
    # The cite check: the sources it gives an unlabelled sentence hold at least this share of its content
    # words (the level the lexical citation judge was calibrated at on hand labels; evals/README.md).
    cite_overlap_min: float = 0.5
    # A reply of labels only is answered with the sentence of its sources that best matches the question;
    # one holding the kind of entity asked for (a name for who) gains this on the lexical match (a share
    # of the question's content words, 0 to 1), so it wins unless another matches much better (set by
    # hand, not fitted).
    quote_wants_bonus: float = 0.5
    # For a question about now, an older article the gate found answer-bearing is quoted beside the
    # answer unless its content words share at least this Jaccard with the cited text (it says the
    # same). Set by hand, as the other same-text tests (copy_same_text_min, timeline_same_event_min).
    as_of_same_min: float = 0.5
    # Named entities from spaCy (question names, answer types); off leaves those checks without names.
    ner: bool = True
    # Checks switched off, for ablations (the names in assistant.types.CHECKS).
    checks_off: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TimelineSettings:
    """Timelines: chunks searched for a topic, and the least P(about the topic) an event needs."""

    PREFIX: ClassVar[str] = "timeline_"
    chunks: int = 16
    topic_min: float = 0.5
    # Two events on the same date, precision and status whose content words share at least this
    # Jaccard are one event (set by hand, not fitted; events citing the same file merge regardless).
    same_event_min: float = 0.5


@dataclass(frozen=True)
class ServerSettings:
    """`assistant serve` and the clients that use it."""

    PREFIX: ClassVar[str] = "server_"
    # A resident server for `ask` and `chat` to use (else found through <index_dir>/server.json).
    url: str = ""
    # /v1/chat/completions ends the message content with a "Sources:" block (label, file, quote) for
    # clients that show only the content; a request's "sources_block": false, or this off, leaves it out.
    sources_block: bool = True
    # Requests the server holds at once (one answered, the rest waiting for the model); beyond it,
    # 503 with Retry-After. A question longer than question_max_chars gets 413.
    queue_max: int = 4
    question_max_chars: int = 2000
    # The bearer token the server requires and the client sends.
    token: str = field(default="", repr=False)


# The groups, in the order `Settings` holds them.
GROUPS: dict[str, type] = {"index": IndexSettings, "model": ModelSettings, "answer": AnswerSettings,
                           "retrieval": RetrievalSettings, "evidence": EvidenceSettings, "checks": CheckSettings,
                           "timeline": TimelineSettings, "server": ServerSettings}
# Each setting's key is its group's prefix and its name ("evidence_tokens", "server_url", "top_k"): the
# key names it in `from_env`, `with_`, run folders and, in capitals after ASSISTANT_, the environment.
KEYS: dict[str, tuple[str, str]] = {cls.PREFIX + f.name: (group, f.name)
                                    for group, cls in GROUPS.items() for f in fields(cls)}
_TYPES: dict[str, Any] = {cls.PREFIX + f.name: f.type for cls in GROUPS.values() for f in fields(cls)}
# Environment variables other than ASSISTANT_<KEY>: shorter or conventional names users already set.
_ENV_NAMES = {"corpus_dir": "ASSISTANT_CORPUS", "n_threads": "ASSISTANT_THREADS", "n_ctx": "ASSISTANT_CTX",
              "openai_api_key": "OPENAI_API_KEY"}
_SECRETS = ("openai_api_key", "server_token")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the assistant, in frozen groups; build with `Settings.from_env()` or
    `Settings().with_(key=value, ...)`. Read a setting through its group (`settings.evidence.tokens`);
    the flat key (`settings.evidence_tokens`) also reads, for callers of the Python API."""

    index: IndexSettings = field(default_factory=IndexSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    timeline: TimelineSettings = field(default_factory=TimelineSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a flat key reads through its group.
        where = KEYS.get(name)
        if where is None:
            raise AttributeError(f"Settings has no setting '{name}'")
        return getattr(object.__getattribute__(self, where[0]), where[1])

    @staticmethod
    def env_names() -> dict[str, str]:
        """Setting key -> the environment variable that sets it."""
        return {key: _ENV_NAMES.get(key, f"ASSISTANT_{key.upper()}") for key in KEYS}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read settings from the environment, then apply explicit overrides (by key)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key, var in cls.env_names().items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[key] = _coerce(key, var, raw, _TYPES[key])
        if not values.get("openai_base_url") and env.get("OPENAI_BASE_URL"):
            values["openai_base_url"] = env["OPENAI_BASE_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls().with_(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some settings changed, by key (None values are ignored)."""
        by_group: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key not in KEYS:
                raise TypeError(f"unknown setting '{key}'")
            group, name = KEYS[key]
            by_group.setdefault(group, {})[name] = value
        return replace(self, **{g: replace(getattr(self, g), **v) for g, v in by_group.items()})

    def validate(self) -> None:
        """Reject values that cannot work."""
        index, checks, server = self.index, self.checks, self.server
        if index.chunk_size < 100:
            raise ConfigError("chunk_size must be at least 100 characters (ASSISTANT_CHUNK_SIZE)")
        if not 0 <= index.chunk_overlap < index.chunk_size:
            raise ConfigError("chunk_overlap must be >= 0 and below chunk_size (ASSISTANT_CHUNK_OVERLAP)")
        if server.queue_max < 1 or server.question_max_chars < 1:
            raise ConfigError("ASSISTANT_SERVER_QUEUE_MAX and ASSISTANT_SERVER_QUESTION_MAX_CHARS must be at least 1")
        unknown = sorted(set(checks.checks_off) - set(CHECKS))
        if unknown:
            raise ConfigError(f"unknown check(s) {', '.join(unknown)} in ASSISTANT_CHECKS_OFF; "
                              f"known: {', '.join(CHECKS)}")
        for name in ("gate_none_max", "support_min", "conflict_min_p", "pick_none_max"):
            if not 0.0 <= getattr(checks, name) <= 1.0:
                raise ConfigError(f"{name} is a probability: give a value from 0 to 1 (ASSISTANT_{name.upper()})")
        if not 1 <= index.copies_bands <= index.copies_num_perm:
            raise ConfigError("copies_bands must be from 1 to copies_num_perm (ASSISTANT_COPIES_BANDS)")
        if self.evidence.chars_per_token <= 0:
            raise ConfigError("evidence_chars_per_token must be above 0 (ASSISTANT_EVIDENCE_CHARS_PER_TOKEN)")
        if self.retrieval.top_k < 1:
            raise ConfigError("top_k must be at least 1 (ASSISTANT_TOP_K)")
        for spec, var in ((index.embedder, "ASSISTANT_EMBEDDER"), (self.model.llm, "ASSISTANT_LLM")):
            if ":" not in spec:
                raise ConfigError(f"'{spec}' is not a provider:model string; set {var} like 'local:...' or 'openai:...'")

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to write to run folders, by key: secrets are never included."""
        out = {key: getattr(getattr(self, group), name) for key, (group, name) in KEYS.items()}
        for key in _SECRETS:
            out[key] = "set" if out[key] else ""
        out["checks_off"] = sorted(self.checks.checks_off)
        return out


def _coerce(name: str, var: str, raw: str, typ: Any) -> Any:
    kind = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if kind == "bool":
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r} is not a valid boolean for setting '{name}': use 1/0, true/false")
    if kind.startswith("frozenset"):
        return frozenset(part.strip() for part in raw.split(",") if part.strip())
    if kind.startswith("tuple"):  # named weights, as a JSON object
        try:
            pairs = json.loads(raw)
            return tuple((str(k), float(v)) for k, v in pairs.items())
        except (ValueError, AttributeError, TypeError):
            raise ConfigError(f"{var}={raw!r} is not a JSON object of numbers for setting '{name}'") from None
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind} for setting '{name}'") from None
    return raw
