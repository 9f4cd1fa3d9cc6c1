import sys
from pathlib import Path
import assistant.evaluate.timelines as T
import assistant.answering.ask as A
from assistant.backends.recorded import ReplayChatModel
from assistant.settings import Settings
T.CORPORA["sample"] = Path("/tmp/plain")
replay = ReplayChatModel(sys.argv[1])
A.get_llm = lambda settings, *a, **k: replay
settings = Settings.from_env()
result = T.run("evals/datasets/timelines.jsonl", settings)
folder = T.write_report(result, runs_dir="/work/runs/old_tl")
print(folder, "misses", len(replay.misses))
