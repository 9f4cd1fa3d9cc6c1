"""Scoring functions checked against small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assistant.evaluate.metrics import (
    alce_citation_scores,
    bootstrap_ci,
    citation_file_precision_recall,
    contains_answer,
    decline_scores,
    dedupe,
    exact_match,
    hit_at_k,
    latency_summary,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    passage_relevant,
    recall_at_k,
    token_f1,
)

# --- retrieval ---------------------------------------------------------------


def test_dedupe_keeps_first_position_of_each_item() -> None:
    assert dedupe(["f1", "f1", "f2", "f1", "f3"]) == ["f1", "f2", "f3"]
    assert dedupe([]) == []


def test_hit_at_k_finds_gold_within_cutoff_only() -> None:
    assert hit_at_k(["a", "b", "c"], {"c"}, k=3) == 1.0
    assert hit_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0


def test_hit_at_k_counts_distinct_items_so_duplicates_do_not_crowd_out_gold() -> None:
    # Three chunks of file a, then file b: deduped ranking is [a, b].
    assert hit_at_k(["a", "a", "a", "b"], {"b"}, k=2) == 1.0


def test_recall_at_k_is_fraction_of_gold_found() -> None:
    ranked = ["a", "b", "c", "d"]
    gold = {"b", "d", "e"}
    assert recall_at_k(ranked, gold, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, k=4) == pytest.approx(2 / 3)


def test_mrr_is_reciprocal_rank_of_first_gold() -> None:
    assert mrr_at_k(["x", "y", "g"], {"g"}) == pytest.approx(1 / 3)
    assert mrr_at_k(["g", "y"], {"g", "y"}) == 1.0


def test_mrr_uses_deduped_rank() -> None:
    # [x, x, g] dedupes to [x, g]: g is at rank 2.
    assert mrr_at_k(["x", "x", "g"], {"g"}) == pytest.approx(1 / 2)


def test_mrr_is_zero_when_gold_is_beyond_k() -> None:
    assert mrr_at_k(["x", "y", "g"], {"g"}, k=2) == 0.0


def test_ndcg_matches_hand_computation() -> None:
    # ranked [a, b, c], gold {b, c}:
    # DCG  = 1/log2(3) + 1/log2(4) = 0.63093 + 0.5 = 1.13093
    # IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.63093 = 1.63093
    # nDCG = 1.13093 / 1.63093 = 0.69342
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["a", "b", "c"], {"b", "c"}) == pytest.approx(expected)
    assert expected == pytest.approx(0.69342, abs=1e-5)


def test_ndcg_rewards_earlier_relevant_results() -> None:
    early = ndcg_at_k(["b", "c", "a"], {"b", "c"})
    late = ndcg_at_k(["a", "b", "c"], {"b", "c"})
    assert early == pytest.approx(1.0)
    assert early > late


def test_ndcg_ideal_is_capped_at_k() -> None:
    # ranked [a, b], gold {b, c, d}, k=2:
    # DCG  = 1/log2(3) = 0.63093 (b at rank 2)
    # IDCG = 1 + 1/log2(3) = 1.63093 (only two slots for three gold items)
    # nDCG = 0.38685
    assert ndcg_at_k(["a", "b"], {"b", "c", "d"}, k=2) == pytest.approx(0.38685, abs=1e-5)


def test_ndcg_gives_duplicates_no_extra_gain() -> None:
    # [b, b, c] dedupes to [b, c]: a perfect ranking, not a bonus for b twice.
    assert ndcg_at_k(["b", "b", "c"], {"b", "c"}) == pytest.approx(1.0)


def test_retrieval_metrics_score_zero_on_empty_ranking() -> None:
    for metric in (hit_at_k, recall_at_k, mrr_at_k, ndcg_at_k):
        assert metric([], {"a"}, k=5) == 0.0


def test_retrieval_metrics_reject_empty_gold() -> None:
    for metric in (hit_at_k, recall_at_k, mrr_at_k, ndcg_at_k):
        with pytest.raises(ValueError):
            metric(["a"], set(), k=5)


def test_retrieval_metrics_reject_nonpositive_k() -> None:
    with pytest.raises(ValueError):
        hit_at_k(["a"], {"a"}, k=0)


def test_passage_is_relevant_when_it_contains_evidence_despite_case_and_spacing() -> None:
    evidence = ["Qin assumed the ministerial post last December."]
    passage = "Earlier text. QIN assumed the ministerial\u00a0post last December. Later text."
    assert passage_relevant(passage, evidence)


def test_passage_is_relevant_when_it_covers_most_evidence_tokens() -> None:
    # Normalised evidence: "qin assumed ministerial post last december" (6 tokens).
    evidence = ["Qin assumed the ministerial post last December."]
    assert passage_relevant("... Qin assumed the ministerial post", evidence)  # 4/6 = 0.67
    assert not passage_relevant("the ministerial post was vacant", evidence)  # 2/6 = 0.33


def test_passage_is_not_relevant_without_evidence() -> None:
    assert not passage_relevant("anything", [])


# --- answers -----------------------------------------------------------------


def test_normalize_answer_strips_case_punctuation_articles_and_spaces() -> None:
    assert normalize_answer("The  Apec summit, in \u201cThailand\u201d!") == "apec summit in thailand"
    assert normalize_answer("") == ""


def test_exact_match_ignores_surface_differences_and_takes_any_gold() -> None:
    assert exact_match("the Wang Yi.", ["Qin Gang", "Wang Yi"]) == 1.0
    assert exact_match("Wang", ["Wang Yi"]) == 0.0
    assert exact_match("April 2", "April 2") == 1.0
    assert exact_match("x", []) == 0.0


def test_token_f1_matches_hand_computation() -> None:
    # pred "wang yi visited" vs gold "wang yi": overlap 2, P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Wang Yi visited", ["Wang Yi"]) == pytest.approx(0.8)


def test_token_f1_takes_best_gold() -> None:
    # vs "qin": overlap 1, P = 1/2, R = 1, F1 = 2/3; vs "wang yi": 0.
    assert token_f1("Qin Gang", ["Wang Yi", "Qin"]) == pytest.approx(2 / 3)


def test_token_f1_empty_answers_follow_squad_convention() -> None:
    assert token_f1("", [""]) == 1.0
    assert token_f1("", ["Wang Yi"]) == 0.0
    assert token_f1("Wang Yi", []) == 0.0


def test_contains_answer_matches_whole_tokens_only() -> None:
    assert contains_answer("They met on April 2, 2023.", ["April 2"])
    assert not contains_answer("It was last held in 2019.", ["2"])
    assert not contains_answer("anything", [""])


# --- citations ---------------------------------------------------------------


def test_citation_file_precision_recall_on_overlap() -> None:
    assert citation_file_precision_recall(["a", "b"], ["b", "c"]) == (0.5, 0.5)


def test_citation_file_precision_recall_ignores_duplicate_citations() -> None:
    assert citation_file_precision_recall(["a", "a", "b"], ["b"]) == (0.5, 1.0)


def test_citation_file_scores_for_empty_sets() -> None:
    assert citation_file_precision_recall([], []) == (1.0, 1.0)  # correct decline
    assert citation_file_precision_recall([], ["a"]) == (0.0, 0.0)  # uncited answer
    assert citation_file_precision_recall(["a"], []) == (0.0, 1.0)  # citing on an unanswerable


# A toy support judge: a sentence needs all its facts present in the premise text.
_NEEDS = {"A": {"x"}, "B": {"x", "y"}, "C": {"z"}, "D": {"x"}}


def _supports(passage: str, sentence: str) -> bool:
    return _NEEDS[sentence] <= set(passage.split())


def test_alce_scores_match_hand_computation() -> None:
    sentences = [
        ("A", ["x", "y"]),  # supported; y is irrelevant (alone no, and x suffices) -> 1/2 precise
        ("B", ["x", "y"]),  # supported only jointly; both needed -> 2/2 precise
        ("C", ["x"]),  # not supported -> 0/1 precise
        ("D", []),  # no citation -> not supported, adds no citations
    ]
    recall, precision = alce_citation_scores(sentences, _supports)
    assert recall == pytest.approx(2 / 4)
    assert precision == pytest.approx(3 / 5)


def test_alce_counts_redundant_but_individually_supporting_citations_as_precise() -> None:
    # Both passages alone support A, so neither is irrelevant (ALCE condition A).
    assert alce_citation_scores([("A", ["x", "x again"])], _supports) == (1.0, 1.0)


def test_alce_passes_passage_first_and_sentence_second() -> None:
    calls: list[tuple[str, str]] = []

    def spy(passage: str, sentence: str) -> bool:
        calls.append((passage, sentence))
        return True

    alce_citation_scores([("claim", ["p1"])], spy)
    assert calls == [("p1", "claim")]


def test_alce_on_empty_answer_scores_zero() -> None:
    assert alce_citation_scores([], _supports) == (0.0, 0.0)


# --- declines ----------------------------------------------------------------


def test_decline_scores_match_hand_computation() -> None:
    records = [
        {"answerable": True, "declined": False, "prediction": "They met on April 2.", "golds": ["April 2"]},  # +1
        {"answerable": True, "declined": False, "prediction": "April 1", "golds": ["April 2"]},  # -1
        {"answerable": True, "declined": True, "prediction": "", "golds": ["Wang Yi"]},  # 0
        {"answerable": False, "declined": True, "prediction": ""},  # +1
        {"answerable": False, "declined": False, "prediction": "Tokyo"},  # -1
        {"answerable": True, "declined": False, "correct": True},  # +1 (judge verdict)
    ]
    scores = decline_scores(records)
    assert scores["n"] == 6
    assert scores["n_answerable"] == 4
    assert scores["n_unanswerable"] == 2
    assert scores["correct_decline_rate"] == pytest.approx(1 / 2)
    assert scores["wrong_decline_rate"] == pytest.approx(1 / 4)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["hallucination_rate"] == pytest.approx(2 / 6)
    assert scores["missing_rate"] == pytest.approx(1 / 6)
    # CRAG: (3 * 1 + 1 * 0 + 2 * -1) / 6 = 1/6 = accuracy - hallucination rate.
    assert scores["crag_score"] == pytest.approx(1 / 6)


def test_blank_prediction_counts_as_decline() -> None:
    scores = decline_scores([{"answerable": False, "declined": False, "prediction": "  "}])
    assert scores["correct_decline_rate"] == 1.0
    assert scores["crag_score"] == 1.0


def test_decline_scores_leave_undefined_rates_as_none() -> None:
    scores = decline_scores([])
    assert scores["n"] == 0
    assert scores["crag_score"] is None
    assert scores["correct_decline_rate"] is None


# --- uncertainty and timing --------------------------------------------------


def test_bootstrap_ci_contains_the_mean() -> None:
    mean, low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert low <= mean <= high
    assert low >= 1.0 and high <= 5.0


def test_bootstrap_ci_is_deterministic_with_a_seed() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 1000
    _, lo_s, hi_s = bootstrap_ci(small)
    _, lo_l, hi_l = bootstrap_ci(large)
    assert hi_l - lo_l < (hi_s - lo_s) / 3


def test_bootstrap_ci_of_constant_values_has_zero_width() -> None:
    assert bootstrap_ci([0.5] * 4) == (0.5, 0.5, 0.5)


def test_bootstrap_ci_rejects_empty_input() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_latency_summary_matches_hand_computation() -> None:
    # Sorted [1, 2, 3, 4, 100]; p95 position = 0.95 * 4 = 3.8 -> 4 + 0.8 * (100 - 4) = 80.8
    summary = latency_summary([3.0, 1.0, 100.0, 2.0, 4.0])
    assert summary["p50"] == pytest.approx(3.0)
    assert summary["p95"] == pytest.approx(80.8)
    assert summary["mean"] == pytest.approx(22.0)
    assert summary["p95"] == pytest.approx(float(np.percentile([1, 2, 3, 4, 100], 95)))


def test_latency_summary_rejects_empty_input() -> None:
    with pytest.raises(ValueError):
        latency_summary([])


def test_figures_stay_whole_when_answers_are_normalised() -> None:
    assert normalize_answer("$28.5 million") == normalize_answer("$28.5m") == "$ 28.5 million"
    assert normalize_answer("1,200 jobs") == "1200 jobs"
    assert normalize_answer("1.2bn") == "1.2 billion"
    assert contains_answer("The deal was worth $28.5m [S1].", ["$28.5 million"])
    # "$28" is not "$28.5 million": the decimal is part of the figure.
    assert not contains_answer("The deal was worth $28 [S1].", ["$28.5 million"])


def test_a_negated_answer_does_not_contain_the_gold() -> None:
    assert not contains_answer("Multiplex said it would not break even [S1].", ["break even"])
    assert not contains_answer("It didn't break even.", ["break even"])
    assert contains_answer("It said it would only break even [S1].", ["break even"])
    # A gold that is itself negative still matches.
    assert contains_answer("It would not make any money.", ["would not make any money"])
