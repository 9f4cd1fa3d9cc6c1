"""Pure scoring functions for retrieval, answers, citations, declines and timing.

Nothing here calls a model: judgements that need one (does a passage support a
sentence?) are passed in as callables so the same code scores NLI, LLM-judge or
lexical checkers.

Conventions
-----------
Retrieval metrics take a ranked list of ids (file names or chunk ids) and a set
of gold ids, with binary relevance. Ranked lists are passed through `dedupe`
first: when chunks are mapped to their files, the same file appears several
times, and only its first (best) position may earn credit. `k` therefore counts
distinct items. To cut at k *chunks* instead, slice before calling
(`hit_at_k(files_of(chunks[:5]), gold, k=5)`). Retrieval metrics are undefined
without gold items (unanswerable questions) and raise `ValueError` so that a
caller cannot silently average them in.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

# ---------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------


def dedupe(ranked: Iterable[str]) -> list[str]:
    """Keep each item at its first position only, preserving rank order."""
    seen: set[str] = set()
    out: list[str] = []
    for item in ranked:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _top_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> tuple[list[str], set[str]]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("retrieval metrics need at least one gold item; skip unanswerable cases")
    return dedupe(ranked)[:k], gold_set


def hit_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1.0 if any gold item is among the first k distinct ranked items, else 0.0."""
    top, gold_set = _top_k(ranked, gold, k)
    return 1.0 if any(item in gold_set for item in top) else 0.0


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Fraction of gold items found among the first k distinct ranked items."""
    top, gold_set = _top_k(ranked, gold, k)
    return len(gold_set.intersection(top)) / len(gold_set)


def mrr_at_k(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    """Reciprocal rank of the first gold item within the first k distinct items (0.0 if none)."""
    top, gold_set = _top_k(ranked, gold, k)
    for rank, item in enumerate(top, start=1):
        if item in gold_set:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG over the first k distinct items (gain 1/log2(rank+1))."""
    top, gold_set = _top_k(ranked, gold, k)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(top, start=1) if item in gold_set)
    # The ideal list puts every gold item first, but can hold at most k of them.
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold_set), k) + 1))
    return dcg / ideal


# ---------------------------------------------------------------------------
# Answer text
# ---------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _strip_punctuation(text: str) -> str:
    # Unicode categories rather than string.punctuation: news text has curly
    # quotes and dashes that ASCII punctuation would leave in place.
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


# Figures survive punctuation removal whole: "$28.5 million" keeps "28.5" (not "28 5"), "1,200" is
# "1200", a currency sign is a token of its own, and the scale suffixes "m"/"bn"/"k" are spelt out.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_CURRENCY = re.compile(r"([$£€¥])")
_SCALE = re.compile(r"(?<=\d)\s*(bn|m|k|tn)\b")
_SCALE_WORDS = {"bn": " billion", "m": " million", "k": " thousand", "tn": " trillion"}
_POINT = "\u2219"  # a bullet operator (a symbol, not punctuation) stands in for the decimal point while punctuation goes


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and a/an/the, squeeze whitespace;
    figures are kept whole ("28.5", "1200", "$ 10", "1.2 billion")."""
    text = _THOUSANDS.sub("", s.lower().replace("n't", " not"))
    text = _SCALE.sub(lambda m: _SCALE_WORDS[m.group(1)], text)
    text = _CURRENCY.sub(r" \1 ", _DECIMAL.sub(_POINT, text))
    text = _strip_punctuation(text).replace(_POINT, ".")
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(golds: str | Sequence[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(pred: str, golds: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold, else 0.0."""
    norm = normalize_answer(pred)
    return 1.0 if any(norm == normalize_answer(g) for g in _as_list(golds)) else 0.0


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        # SQuAD convention: two empty answers agree, one empty answer scores 0.
        return 1.0 if pred_tokens == gold_tokens else 0.0
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, golds: str | Sequence[str]) -> float:
    """SQuAD token F1 between prediction and gold, maximised over the golds (0.0 if none)."""
    pred_tokens = normalize_answer(pred).split()
    return max((_f1(pred_tokens, normalize_answer(g).split()) for g in _as_list(golds)), default=0.0)


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor"})


def contains_answer(pred: str, golds: str | Sequence[str]) -> bool:
    """True if some non-empty normalised gold appears as a whole-token run inside the prediction,
    not negated there ("did not break even" does not give the gold "break even")."""
    # Whole tokens, not substrings: gold "2" must not match "2019".
    pred_tokens = normalize_answer(pred).split()
    for gold in _as_list(golds):
        gold_tokens = normalize_answer(gold).split()
        n = len(gold_tokens)
        if not gold_tokens or _NEGATIONS & set(gold_tokens):
            if gold_tokens and _contains_tokens(pred_tokens, gold_tokens):
                return True
            continue
        for i in range(len(pred_tokens) - n + 1):
            if pred_tokens[i:i + n] == gold_tokens and not _NEGATIONS & set(pred_tokens[max(0, i - 3):i]):
                return True
    return False


def passage_relevant(passage_text: str, evidence: Sequence[str], min_overlap: float = 0.6) -> bool:
    """True if the passage contains a gold evidence sentence or covers >= 60% of its tokens."""
    # Token coverage (not exact containment) because chunkers cut sentences at
    # boundaries and may rewrite whitespace; a passage holding most of the
    # sentence still lets a reader answer.
    passage_norm = normalize_answer(passage_text)
    passage_counts = Counter(passage_norm.split())
    for sentence in evidence:
        sentence_norm = normalize_answer(sentence)
        if not sentence_norm:
            continue
        if sentence_norm in passage_norm:
            return True
        sentence_counts = Counter(sentence_norm.split())
        covered = sum((sentence_counts & passage_counts).values())
        if covered / sum(sentence_counts.values()) >= min_overlap:
            return True
    return False


# ---------------------------------------------------------------------------
# Citations
# ---------------------------------------------------------------------------


def citation_file_precision_recall(cited_files: Sequence[str], gold_files: Sequence[str]) -> tuple[float, float]:
    """File-level citation (precision, recall) over sets of file names.

    Duplicates are ignored. Empty cases:
    - nothing cited, no gold (a correct decline): (1.0, 1.0);
    - nothing cited, gold exists (an uncited answer): (0.0, 0.0) - precision is
      undefined and treated as 0 so an answer cannot gain by citing nothing;
    - something cited, no gold (citing on an unanswerable question): (0.0, 1.0).
    """
    cited, gold = set(cited_files), set(gold_files)
    if not cited and not gold:
        return 1.0, 1.0
    if not cited:
        return 0.0, 0.0
    if not gold:
        return 0.0, 1.0
    hits = len(cited & gold)
    return hits / len(cited), hits / len(gold)


def alce_citation_scores(
    sentences: Sequence[tuple[str, Sequence[str]]],
    supports: Callable[[str, str], bool],
) -> tuple[float, float]:
    """ALCE citation (recall, precision) for one answer; `supports(passage, sentence)` judges support.

    Follows `compute_autoais` in ALCE's eval.py (Gao et al., 2023):
    - recall: a sentence scores 1 if the concatenation (joined by newlines) of
      all passages it cites supports it; a sentence without citations scores 0;
      recall is the mean over sentences.
    - precision: a citation is *irrelevant* if it alone does not support the
      sentence and the remaining citations still do. If a sentence is not
      supported by all its citations together, none of its citations count as
      precise. Precision = precise citations / all citations (0.0 when there
      are no citations at all, as in ALCE).
    An empty sentence list scores (0.0, 0.0); skip declined answers before calling.
    """
    if not sentences:
        return 0.0, 0.0
    supported_sentences = 0
    precise = 0
    total_citations = 0
    for sentence, cited in sentences:
        cited = list(cited)
        total_citations += len(cited)
        if not cited or not supports("\n".join(cited), sentence):
            continue
        supported_sentences += 1
        if len(cited) == 1:
            precise += 1
            continue
        for i, passage in enumerate(cited):
            if supports(passage, sentence):
                precise += 1
                continue
            rest = cited[:i] + cited[i + 1:]
            if not supports("\n".join(rest), sentence):
                precise += 1
    recall = supported_sentences / len(sentences)
    precision = precise / total_citations if total_citations else 0.0
    return recall, precision


# ---------------------------------------------------------------------------
# Declines (CRAG-style)
# ---------------------------------------------------------------------------


def _is_decline(record: Mapping[str, Any]) -> bool:
    if record.get("declined"):
        return True
    # A blank answer is a non-answer whatever the flag says.
    return "prediction" in record and not str(record["prediction"]).strip()


def _is_correct(record: Mapping[str, Any]) -> bool:
    if "correct" in record:
        return bool(record["correct"])
    pred = str(record.get("prediction", ""))
    golds = _as_list(record.get("golds", []))
    return exact_match(pred, golds) == 1.0 or contains_answer(pred, golds)


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def decline_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """Decline rates and a CRAG-style score (+1 correct, 0 declined, -1 wrong), averaged.

    Each record is a mapping with:
    - ``answerable`` (bool): whether the gold set has an answer;
    - ``declined`` (bool): whether the system declined to answer;
    - either ``correct`` (bool, e.g. from a human or LLM judge) or
      ``prediction`` (str) and ``golds`` (list of gold answer plus aliases).

    Outcome per record:
    - answerable and answered: +1 if correct, else -1 (hallucination). Without a
      ``correct`` key, correct means exact match with, or containing as whole
      tokens, the gold answer or an alias (see `exact_match`, `contains_answer`);
    - answerable and declined (or blank prediction): 0 (missing);
    - unanswerable and declined: +1 (the correct response). This departs from
      CRAG, whose only no-answer class is false premise with the literal answer
      "invalid question"; here declining is the right behaviour;
    - unanswerable and answered: -1 (hallucination), whatever the text.

    Returns counts, ``correct_decline_rate`` (declined / unanswerable),
    ``wrong_decline_rate`` (declined / answerable), ``accuracy``,
    ``hallucination_rate``, ``missing_rate`` and ``crag_score`` = accuracy -
    hallucination_rate. Rates whose denominator is zero are None.
    """
    n_ans = n_unans = correct = wrong = missing = declined_unans = declined_ans = 0
    for record in records:
        declined = _is_decline(record)
        if record["answerable"]:
            n_ans += 1
            if declined:
                declined_ans += 1
                missing += 1
            elif _is_correct(record):
                correct += 1
            else:
                wrong += 1
        else:
            n_unans += 1
            if declined:
                declined_unans += 1
                correct += 1
            else:
                wrong += 1
    n = n_ans + n_unans
    accuracy = _rate(correct, n)
    hallucination = _rate(wrong, n)
    return {
        "n": n,
        "n_answerable": n_ans,
        "n_unanswerable": n_unans,
        "correct_decline_rate": _rate(declined_unans, n_unans),
        "wrong_decline_rate": _rate(declined_ans, n_ans),
        "accuracy": accuracy,
        "hallucination_rate": hallucination,
        "missing_rate": _rate(missing, n),
        "crag_score": None if accuracy is None or hallucination is None else accuracy - hallucination,
    }


# ---------------------------------------------------------------------------
# Uncertainty and timing
# ---------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile-bootstrap (mean, low, high) of the mean; deterministic for a given seed."""
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(n_resamples, len(data)))
    means = data[idx].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(data.mean()), float(low), float(high)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile (linear interpolation) and mean of latencies in seconds."""
    if not seconds:
        raise ValueError("latency_summary needs at least one timing")
    data = np.asarray(seconds, dtype=float)
    p50, p95 = np.percentile(data, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(data.mean())}
