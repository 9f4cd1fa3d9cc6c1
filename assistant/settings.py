"""Settings: the only module that reads the environment (prefix ASSISTANT_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

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
class Settings:
    """Every tunable of the assistant; build with `Settings.from_env()` or directly."""

    corpus_dir: str = field(default_factory=_default_corpus)
    index_dir: str = "index"
    chroma_url: str = ""
    collection: str = "articles"
    embedder: str = "local:all-MiniLM-L6-v2"
    llm: str = "local:qwen2.5-coder-1.5b"
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    request_timeout: float = 60.0
    max_retries: int = 3
    cache_dir: str = field(default_factory=lambda: str(Path.home() / ".cache" / "assistant"))
    # Chunking (characters; sentences are never split unless longer than chunk_size).
    chunk_size: int = 700
    chunk_overlap: int = 150
    max_file_bytes: int = 5_000_000
    embed_batch_size: int = 64
    # Retrieval.
    top_k: int = 4
    dense_k: int = 20
    bm25_k: int = 20
    rrf_k: int = 60
    # Files carrying the same article (near-duplicate copies, assistant/indexing/copies.py) share one
    # retrieval slot; the representative is cited and its copies listed.
    group_copies: bool = True
    # Evidence budget in prompt tokens (characters / 4), spent on the best sentences of the first
    # `candidate_chunks` retrieved chunks, each with `evidence_after` sentences after it and, budget
    # allowing, `evidence_before` before it, from at most `evidence_files` files. The local model
    # reads ~70 tokens/s, so 100 tokens cost ~1.4 s. Fitted on BBC dev (evals/README.md, "Evidence").
    evidence_tokens: int = 600
    evidence_after: int = 1
    evidence_after_explain: int = 2
    # ...but only when the pick and the sentence after it fit in this many tokens together (0: always).
    # At 450 to 900 evidence tokens it raised the plain sample's all-evidence recall by 0.03 to 0.09
    # (long sentences: a pick with its follower cost twice a BBC pick) and moved BBC dev by one case
    # either way (600 tokens: 0.918 all / 1.000 any, against 0.928 / 0.990; evals/README.md).
    evidence_after_max_tokens: int = 60
    evidence_new_file_bonus: float = 1.0
    evidence_before: int = 0
    evidence_files: int = 4
    candidate_chunks: int = 8
    candidate_files: int = 0  # the best this many files offer every sentence, not only the matched chunks
    # One search per question, sliced: the first `candidate_chunks` feed the prompt, all of them the
    # entities check (a name the question gives must be in one of these).
    search_chunks: int = 20
    # A question about now: the newest dated candidate sentence gains this much ranking score (the
    # ranker's logit scale), and a note says so when the newest article is older than stale_days.
    recency_weight: float = 1.0
    stale_days: int = 120
    max_answer_tokens: int = 160
    # Local model runtime.
    n_threads: int = 2
    n_ctx: int = 4096
    temperature: float = 0.0
    # llama.cpp n-gram speculative decoding for the local model (benchmarks/RESULTS.md, "Speculative").
    speculative: bool = False
    # Chat history kept verbatim (older turns are dropped from the prompt).
    history_turns: int = 4
    # The answering checks (assistant/checks). Thresholds were fitted on the BBC dev split with the
    # default local model (evals/README.md, "Calibration"); other models should refit them.
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
    # the answer does not give. Off by default: this session could not run BBC dev with the model to
    # fit it (evals/README.md, "Pick"); ASSISTANT_PICK_CHECK=1 switches it on, traced evals included.
    pick_check: bool = False
    pick_none_max: float = 0.5
    # Sources the gate gives at least this probability are compared for disagreeing values.
    conflict_min_p: float = 0.15
    # The cite check: the sources it gives an unlabelled sentence hold at least this share of its content
    # words (the level the lexical citation judge was calibrated at on hand labels; evals/README.md).
    cite_overlap_min: float = 0.5
    # The pick check offers the model at most this many of the sources' entities.
    pick_max_options: int = 24
    # Timelines: chunks searched for a topic, and the least P(about the topic) an event needs.
    timeline_chunks: int = 16
    timeline_topic_min: float = 0.5
    # Named entities from spaCy (question names, answer types); off leaves those checks without names.
    ner: bool = True
    # Checks switched off, for ablations: any of entities, answerable, supported, addresses.
    checks_off: frozenset[str] = frozenset()
    # A resident `assistant serve` for `ask` and `chat` to use (else found through <index_dir>/server.json),
    # and the bearer token the server requires and the client sends.
    server_url: str = ""
    # /v1/chat/completions ends the message content with a "Sources:" block (label, file, quote) for
    # clients that show only the content; a request's "sources_block": false, or this off, leaves it out.
    server_sources_block: bool = True
    # Requests the server holds at once (one answered, the rest waiting for the model); beyond it,
    # 503 with Retry-After. A question longer than server_question_max_chars gets 413.
    server_queue_max: int = 4
    server_question_max_chars: int = 2000
    server_token: str = field(default="", repr=False)

    # The environment variable of each field is ASSISTANT_ and its name in capitals, but for these,
    # whose shorter or conventional names users already set.
    _ENV_NAMES = {"corpus_dir": "ASSISTANT_CORPUS", "n_threads": "ASSISTANT_THREADS", "n_ctx": "ASSISTANT_CTX",
                  "openai_api_key": "OPENAI_API_KEY"}

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> the environment variable that sets it."""
        return {f.name: cls._ENV_NAMES.get(f.name, f"ASSISTANT_{f.name.upper()}") for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read settings from the environment, then apply explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in cls.env_names().items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[name] = _coerce(name, var, raw, types[name])
        if not values.get("openai_base_url") and env.get("OPENAI_BASE_URL"):
            values["openai_base_url"] = env["OPENAI_BASE_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self) -> None:
        """Reject values that cannot work."""
        if self.chunk_size < 100:
            raise ConfigError("chunk_size must be at least 100 characters (ASSISTANT_CHUNK_SIZE)")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError("chunk_overlap must be >= 0 and below chunk_size (ASSISTANT_CHUNK_OVERLAP)")
        if self.server_queue_max < 1 or self.server_question_max_chars < 1:
            raise ConfigError("ASSISTANT_SERVER_QUEUE_MAX and ASSISTANT_SERVER_QUESTION_MAX_CHARS must be at least 1")
        unknown = sorted(set(self.checks_off) - set(CHECKS))
        if unknown:
            raise ConfigError(f"unknown check(s) {', '.join(unknown)} in ASSISTANT_CHECKS_OFF; "
                              f"known: {', '.join(CHECKS)}")
        for name in ("gate_none_max", "support_min", "conflict_min_p", "pick_none_max"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a probability: give a value from 0 to 1 (ASSISTANT_{name.upper()})")
        if self.top_k < 1:
            raise ConfigError("top_k must be at least 1 (ASSISTANT_TOP_K)")
        for spec, var in ((self.embedder, "ASSISTANT_EMBEDDER"), (self.llm, "ASSISTANT_LLM")):
            if ":" not in spec:
                raise ConfigError(f"'{spec}' is not a provider:model string; set {var} like 'local:...' or 'openai:...'")

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to write to run folders: secrets are never included."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["openai_api_key"] = "set" if self.openai_api_key else ""
        out["server_token"] = "set" if self.server_token else ""
        out["checks_off"] = sorted(self.checks_off)
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
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind} for setting '{name}'") from None
    return raw
