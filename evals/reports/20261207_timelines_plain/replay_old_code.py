"""Replay recorded model replies on an older commit's timeline code (that commit has no --replay
for timelines). From a worktree of the old commit, with its package first on the path:

    PYTHONPATH=. ASSISTANT_CORPUS=/tmp/plain ASSISTANT_INDEX_DIR=... \
        python replay_old_code.py plain_model_calls.jsonl /tmp/plain   # the plain folder
    PYTHONPATH=. python replay_old_code.py dated_model_calls.jsonl      # the dated sample

The second argument points the gold story "sample" at the plain copy (the old code matched a
story to a folder by name only). It prints the run folder and how many requests missed the
recording (0 in both runs committed here).
"""
import sys
from pathlib import Path

import assistant.answering.ask as A
import assistant.evaluate.timelines as T
from assistant.backends.recorded import ReplayChatModel
from assistant.settings import Settings

if len(sys.argv) > 2:
    T.CORPORA["sample"] = Path(sys.argv[2])
replay = ReplayChatModel(sys.argv[1])
A.get_llm = lambda settings, *a, **k: replay  # the old Assistant builds its model through this name
result = T.run("evals/datasets/timelines.jsonl", Settings.from_env())
folder = T.write_report(result, runs_dir="/work/runs/old_tl")
print(folder, "misses", len(replay.misses))
