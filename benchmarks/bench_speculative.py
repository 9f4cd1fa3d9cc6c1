"""llama.cpp n-gram speculative decoding on and off, on answers over BBC evidence.

Run:  HF_HUB_OFFLINE=1 ASSISTANT_CORPUS=../shared/corpora/bbc ASSISTANT_INDEX_DIR=index/bbc \
      .venv/bin/python benchmarks/bench_speculative.py 1   # then again with 0

For one setting (`ASSISTANT_SPECULATIVE` 1 or 0, one process each so the model is loaded with it), a
warm-up question loads the models, then two BBC dev questions are asked through `Assistant.ask`;
the script prints each answer's stage timings (the gate call reads the whole prompt; `generate_s`
writes the answer), its prompt and answer tokens, and the process's peak RSS.
"""

from __future__ import annotations

import resource
import sys

from assistant.answering.ask import Assistant
from assistant.settings import Settings

QUESTIONS = [
    "In October, what did British Airways raise its one-way fuel surcharge on long-haul flights to?",
    "What did Multiplex, the Australian builder of the new Wembley stadium, say it would make on the project?",
]


def main() -> None:
    """Ask the questions with speculative decoding on (argument 1) or off (0) and print timings."""
    on = sys.argv[1] == "1" if len(sys.argv) > 1 else True
    bot = Assistant(Settings.from_env().with_(speculative=on))
    bot.ask("warm up question about fuel prices?")
    for question in QUESTIONS:
        answer = bot.ask(question)
        timings = {k: round(v, 2) for k, v in answer.timings.items()}
        print(int(on), timings, answer.prompt_tokens, answer.completion_tokens, flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
