"""Turn a model's first-token log-probabilities into a distribution over a few reply options."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from ..types import Choice


def grammar(options: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are the options."""
    return "root ::= " + " | ".join('"' + o.replace("\\", "\\\\").replace('"', '\\"') + '"' for o in options)


def match_option(text: str, options: Sequence[str]) -> str:
    """The option a free reply names (first one it starts with, else first it contains), or ''."""
    reply = text.strip().strip("[]().:\"'").lower()
    for option in sorted(options, key=len, reverse=True):  # "S12" before "S1"
        if reply.startswith(option.lower()):
            return option
    for option in sorted(options, key=len, reverse=True):
        if option.lower() in reply:
            return option
    return ""


def to_choice(top: Iterable[tuple[str, float]], options: Sequence[str], reply: str) -> Choice:
    """Spread each top token's probability over the options it can begin, then normalise.

    A token such as "S" begins every label "S1".."S9", so its mass is split evenly among them;
    "NONE", "None", " no" begin one option each. The top log-probabilities are the model's
    distribution before any grammar, so they measure what it would have said unconstrained."""
    chosen = match_option(reply, options)
    mass = {o: 0.0 for o in options}
    for token, logprob in top:
        t = token.strip().lstrip("[(\"'").strip().lower()
        if not t:
            continue
        fits = [o for o in options if o.lower().startswith(t) or t.startswith(o.lower())]
        if len(fits) > 1:
            exact = [o for o in fits if o.lower() == t]
            fits = exact or fits
        for o in fits:
            mass[o] += math.exp(logprob) / len(fits)
    total = sum(mass.values())
    if total <= 0:
        chosen = chosen or options[0]
        return Choice(option=chosen, probs={o: float(o == chosen) for o in options}, calibrated=False)
    probs = {o: v / total for o, v in mass.items()}
    return Choice(option=chosen or max(probs, key=probs.__getitem__), probs=probs)
