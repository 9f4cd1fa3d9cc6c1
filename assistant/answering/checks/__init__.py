"""Every decision about an answer, in one place; `policy.Judge` runs them in order.

understand the question once -> entities_found (NER) -> answerable (model's P(NONE)) ->
numbers, per sentence (NER figures found in a source) ->
supported, per sentence (model's P(yes)) -> addresses (NER label of the answer) -> subject_cited
(the cited articles name the question's people and events) -> disagreement
(values that differ across sources, each read from the parse as happened or planned).
Each returns a Verdict (name, passed, score, reason); thresholds are settings fitted on the dev
split (see evals/README.md), and `Settings.checks_off` switches a check off for an ablation.
"""

from __future__ import annotations

from ...settings import CHECKS
from .policy import PER_SENTENCE, Claims, Judge, Judged
from .judge import answerable, gate_messages, pick, pick_options, supported, support_messages
from .question import Question, question_kind, understand
from .rules import (Disagreement, addresses, disagreement, entities_found, figures, numbers_found, pick_agrees,
                    picked, subject_cited, value_status)
from .verdicts import Verdict

__all__ = ["CHECKS", "PER_SENTENCE", "Claims", "Judge", "Judged", "Disagreement", "Question", "Verdict", "addresses", "answerable", "disagreement",
           "entities_found", "figures", "gate_messages", "numbers_found", "pick", "pick_agrees", "pick_options", "picked", "question_kind", "subject_cited", "value_status", "supported", "support_messages", "understand"]
