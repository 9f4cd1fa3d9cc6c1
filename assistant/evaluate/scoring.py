"""Scoring one case: its answer against the gold (the metrics), its retrieval, and the ALCE
citation recall and precision of its sentences (judged by `support_judge`)."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from ..answering.citations import answer_sentences, lexical_support
from ..dates import date_words
from ..types import Answer, Citation, Passage
from . import metrics as m
from .dataset import EvalCase
from .support_judge import supports

# Labels as either engine writes them: ours "[S1]", CitationQueryEngine's "[1]", "[1, 2]", "[Source 1]".
_LABELS = re.compile(r"\[\s*(?:sources?\s*:?\s*)?S?(\d+(?:\s*(?:,|and|&)\s*(?:sources?\s*:?\s*)?S?\d+)*)\s*\]",
                     re.I)
# "Source 2" written without brackets, and the phrase around it ("According to Source 2, ...").
_BARE = re.compile(r"\bsources?\s+(\d+(?:\s*(?:,|and|&)\s*\d+)*)\b", re.I)
_BARE_PHRASE = re.compile(r"(?:\b(?:according to|as stated in|as mentioned in|as per|as reported in|from|see|in)\s+)?"
                          r"\bsources?\s+\d+(?:\s*(?:,|and|&)\s*\d+)*\b\s*,?", re.I)
# Said-it-in-words declines; informational only (scoring uses the engine's decline flag).
_WORDED_DECLINE = re.compile(
    r"\b(not (?:mentioned|provided|specified|stated|say|said|given|available|found|included|clear)|"
    r"do(?:es)? not (?:say|mention|provide|contain|specify|include|state|give)|no information|"
    r"none of the (?:provided )?sources|cannot (?:be )?(?:determined|answer|find))\b|NOT_IN_SOURCES|"
    r"articles don't say", re.I)


def cited_labels(sentence: str) -> list[str]:
    """Labels a sentence cites, normalised to "S<n>" whichever style the engine wrote."""
    found: list[str] = []
    for match in _LABELS.finditer(sentence):
        found.extend(f"S{n}" for n in re.findall(r"\d+", match.group(1)))
    for match in _BARE.finditer(_LABELS.sub(" ", sentence)):
        found.extend(f"S{n}" for n in re.findall(r"\d+", match.group(1)))
    return list(dict.fromkeys(found))


def prediction_text(text: str) -> str:
    """The answer as scored: without citation labels of any engine's style ("[S1]", "[2]", "according
    to Source 2"), spacing before punctuation tidied (`labels.strip_labels` removes only [S#])."""
    text = re.sub(r"\(\s*\)", " ", _BARE_PHRASE.sub(" ", _LABELS.sub(" ", text)))
    text = re.sub(r"^[\s,;:]+", "", re.sub(r"\s+([.,;!?])", r"\1", re.sub(r"\s{2,}", " ", text)))
    return text[:1].upper() + text[1:] if text else text


def alce_sentences(answer: Answer, dates: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Each answer sentence (labels removed) with the passages it cites: quote plus article date."""
    by_label: dict[str, list[Citation]] = {}
    for c in answer.citations:
        by_label.setdefault(c.label, []).append(c)
    units: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for part in answer_sentences(answer.answer):
        plain, labels = prediction_text(part), cited_labels(part)
        if not re.search(r"[A-Za-z0-9]", plain):
            # A line of labels only: a heading ("Source 1:") cites what follows, else what precedes.
            if units and not part.rstrip().endswith(":"):
                units[-1][1].extend(labels)
            else:
                pending.extend(labels)
            continue
        units.append((plain, pending + labels))
        pending = []
    out: list[tuple[str, list[str]]] = []
    for plain, labels in units:
        passages = []
        for label in dict.fromkeys(labels):
            options = by_label.get(label)
            if not options:
                continue  # a label the engine never resolved cites nothing
            # One label may carry several quotes (one per sentence); judge the one meant here.
            quote = max(options, key=lambda c: lexical_support(plain, c.quote))
            passages.append(f"{quote.quote} {date_words(dates.get(quote.file, ''))}".strip())
        out.append((plain, passages))
    return out


def _retrieval_scores(case: EvalCase, ranked: Sequence[Passage], relevant_ids: set[str]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {}
    files = [p.file for p in ranked]
    gold = set(case.sources)
    for k in (1, 3, 5):
        scores[f"file_hit@{k}"] = m.hit_at_k(files, gold, k) if gold else None
        scores[f"file_recall@{k}"] = m.recall_at_k(files, gold, k) if gold else None
    scores["file_mrr@10"] = m.mrr_at_k(files, gold, 10) if gold else None
    scores["file_ndcg@10"] = m.ndcg_at_k(files, gold, 10) if gold else None
    ids = [p.chunk_id for p in ranked]
    for k in (1, 3, 5):
        scores[f"passage_hit@{k}"] = m.hit_at_k(ids, relevant_ids, k) if relevant_ids else None
    scores["passage_mrr@10"] = m.mrr_at_k(ids, relevant_ids, 10) if relevant_ids else None
    if case.evidence:
        top = ranked[:5]
        found = sum(any(m.passage_relevant(p.text, [e]) for p in top) for e in case.evidence)
        scores["evidence_recall@5"] = found / len(case.evidence)
    else:
        scores["evidence_recall@5"] = None
    return scores


def score_case(case: EvalCase, answer: Answer, latency: float, ranked: Sequence[Passage],
               relevant_ids: set[str], dates: dict[str, str],
               embed: Callable[[Sequence[str]], list[list[float]]] | None) -> dict[str, Any]:
    """Every per-case metric for one answer, as a JSON-ready record."""
    prediction = "" if answer.declined else prediction_text(answer.answer)
    record: dict[str, Any] = {
        "id": case.id, "type": case.type, "question": case.question, "answerable": case.answerable,
        "golds": case.golds, "gold_sources": case.sources,
        "answer": answer.answer, "prediction": prediction, "declined": answer.declined,
        "worded_decline": bool(_WORDED_DECLINE.search(answer.answer)),
        "citations": [c.to_dict() for c in answer.citations],
        "cited_files": sorted({c.file for c in answer.citations}),
        "retrieved_files": m.dedupe(p.file for p in ranked),
        "latency_s": latency, "timings": answer.timings,
        "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
        "unsupported_sentences": answer.unsupported_sentences,
        "decline_reason": answer.decline_reason,
        "verdicts": [v.to_dict() for v in answer.verdicts],
        "draft": answer.draft,
        "notes": answer.notes,
        "standalone_question": answer.standalone_question,
    }
    record.update(_retrieval_scores(case, ranked, relevant_ids))
    if case.answerable:
        record["em"] = m.exact_match(prediction, case.golds)
        record["f1"] = m.token_f1(prediction, case.golds)
        record["contains"] = 1.0 if m.contains_answer(prediction, case.golds) else 0.0
        record["correct"] = bool(prediction) and (record["em"] == 1.0 or record["contains"] == 1.0)
        record["crag"] = 0 if answer.declined else (1 if record["correct"] else -1)
    else:
        record.update(em=None, f1=None, contains=None, correct=answer.declined,
                      crag=1 if answer.declined else -1)
    answered = not answer.declined
    if answered and case.answerable:
        p, r = m.citation_file_precision_recall(record["cited_files"], case.sources)
        record["citation_precision"], record["citation_recall"] = p, r
        record["cites_gold"] = bool(set(record["cited_files"]) & set(case.sources))
    else:
        record["citation_precision"] = record["citation_recall"] = record["cites_gold"] = None
    record.update(alce_scores(answer, dates, embed))
    return record


def alce_scores(answer: Answer, dates: dict[str, str],
                embed: Callable[[Sequence[str]], list[list[float]]] | None) -> dict[str, Any]:
    """ALCE citation recall/precision of one answer, judged by `support_judge.supports` (None if declined)."""
    if answer.declined:
        return {"alce_recall": None, "alce_precision": None, "alce_sentences": []}
    sentences = alce_sentences(answer, dates)
    # metrics.alce_citation_scores calls supports(passage, sentence); ours takes (sentence, passage).
    judge = lambda passage, sentence: supports(sentence, passage, embed)  # noqa: E731
    recall, precision = m.alce_citation_scores(sentences, judge)
    return {"alce_recall": recall, "alce_precision": precision,
            "alce_sentences": [{"sentence": s, "passages": len(ps), "supported": bool(ps) and judge("\n".join(ps), s)}
                               for s, ps in sentences]}


