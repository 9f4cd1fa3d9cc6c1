"""Retrieval at scale: hybrid search latency, cold start, re-index cost and peak memory.

    python benchmarks/bench_scale.py --files-chunks 10000,100000 --synthetic-chunks 1000000 \\
        --out benchmarks/results/scale-YYYYMMDD.json

Two ways to make an index of N chunks, both with synthetic 256-dimension vectors (embedding cost
is left out; the real embedder's throughput is `bench_index.py`):

- files: a folder of copies of the BBC articles (../shared/corpora/bbc), each copy with its own
  tail sentence, indexed by `build_index` with the `fake:hash` embedder. Measures the full build,
  the re-index of the unchanged folder (in a new process, as a user runs it), and the re-index
  after one file changed (which rebuilds the keyword index from the stored texts).
- synthetic: chunks of random BBC sentences written straight into Chroma with random unit vectors,
  the manifest and keyword index built by the library's own functions. For sizes where writing a
  folder of files would take longer than the benchmark is worth (1M chunks).

For each index, a new process measures: cold start (process start to the first search result),
then warm `Retriever.search` p50/p95 over questions of the BBC dev set, and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BBC = REPO.parent / "shared" / "corpora" / "bbc"
QUESTIONS = REPO / "evals" / "datasets" / "bbc_dev.jsonl"
sys.path.insert(0, str(REPO))

# Cold start and warm search in a new process: argv is the spawn time, the settings as JSON (keys of
# `Settings`) and the questions. bench_scaleout.py runs it too.
PROBE = r"""
import json, resource, sys, time
t0 = float(sys.argv[1])
from assistant.search.retrieval import get_retriever
from assistant.settings import Settings
settings = Settings.from_env(environ={}, **json.loads(sys.argv[2]))
questions = json.loads(sys.argv[3])
retriever = get_retriever(settings)
first = retriever.search(questions[0], k=10)
cold = time.time() - t0
for q in questions[:5]:
    retriever.search(q, k=10)
times = []
for q in questions:
    s = time.perf_counter(); retriever.search(q, k=10); times.append(time.perf_counter() - s)
times.sort()
print(json.dumps({"cold_start_s": cold, "first_hits": len(first), "first_top3": [p.file for p in first[:3]],
                  "warm_p50_ms": 1000 * times[len(times) // 2],
                  "warm_p95_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.95))], "queries": len(times),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _questions(n: int = 100) -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows][:n]


def _articles() -> list[str]:
    texts = []
    for path in sorted(BBC.rglob("*.txt")):
        texts.append(path.read_bytes().decode("utf-8", "replace"))
    return texts


def _probe(index_dir: Path, root: Path = REPO) -> dict:
    """Cold start, warm search and peak RSS in a new process running the code under `root`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    settings = json.dumps({"index_dir": str(index_dir), "embedder": "fake:hash"})
    out = subprocess.run([sys.executable, "-c", PROBE, repr(time.time()), settings, json.dumps(_questions())],
                         capture_output=True, text=True, cwd=root, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed_cli(args: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of an `assistant` command in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "assistant.interfaces.cli", *args], check=True, cwd=REPO, capture_output=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "ASSISTANT_EMBEDDER": "fake:hash"})
    wall = time.perf_counter() - t
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def files_run(chunks: int, work: Path) -> dict:
    """Index a folder of tailed BBC copies holding about `chunks` chunks; time builds and searches."""
    from assistant.indexing.build import build_index
    from assistant.settings import Settings

    corpus, index_dir = work / f"corpus-{chunks}", work / f"index-files-{chunks}"
    shutil.rmtree(index_dir, ignore_errors=True)
    articles = _articles()
    per_article = 4.35  # measured: 2,225 BBC articles make 9,680 chunks at 700/150
    n_files = int(chunks / per_article)
    if not corpus.exists() or len(list(corpus.iterdir())) != n_files:
        shutil.rmtree(corpus, ignore_errors=True)
        corpus.mkdir(parents=True)
        rng = random.Random(chunks)
        for n in range(n_files):
            tail = " ".join(rng.choice(("markets", "council", "match", "album", "minister", "shares", "final",
                                        "report", "season", "film")) for _ in range(8))
            (corpus / f"copy{n:06d}.txt").write_text(f"{articles[n % len(articles)]}\n\nCopy {n}: {tail}.\n",
                                                      encoding="utf-8")
    settings = Settings.from_env(environ={}, index_dir=str(index_dir), embedder="fake:hash")
    t = time.perf_counter()
    report = build_index(corpus, settings=settings)
    full = time.perf_counter() - t
    unchanged_wall, unchanged_rss = _timed_cli(["index", str(corpus), "--index-dir", str(index_dir)])
    t = time.perf_counter()
    build_index(corpus, settings=settings)
    unchanged_inproc = time.perf_counter() - t
    victim = corpus / "copy000000.txt"
    victim.write_text(victim.read_text(encoding="utf-8") + "\nOne more sentence changes this file.\n",
                      encoding="utf-8")
    t = time.perf_counter()
    build_index(corpus, settings=settings)
    one_changed = time.perf_counter() - t
    result = {"mode": "files", "files": n_files, "chunks": report.chunks, "full_build_s": full,
              "reindex_unchanged_cli_s": unchanged_wall, "reindex_unchanged_cli_peak_rss_mb": unchanged_rss,
              "reindex_unchanged_inprocess_s": unchanged_inproc,
              "reindex_unchanged_pct_of_full": 100 * unchanged_wall / full,
              "reindex_one_file_changed_s": one_changed}
    result.update(_probe(index_dir))
    return result


def synthetic_run(chunks: int, work: Path, reuse: bool = False) -> dict:
    """Write `chunks` synthetic chunks straight into Chroma, then build manifest and keyword index."""
    import numpy as np

    from assistant.indexing.build import ensure_keyword_index
    from assistant.indexing.keyword import keyword_root
    from assistant.settings import Settings
    from assistant.indexing.store import locate, open_collection, write_json_atomic, manifest_version

    index_dir = work / f"index-synthetic-{chunks}"
    if not reuse:
        shutil.rmtree(index_dir, ignore_errors=True)
    settings = Settings.from_env(environ={}, index_dir=str(index_dir), embedder="fake:hash")
    loc = locate(settings)
    sentences = [s for text in _articles() for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 40]
    rng = random.Random(chunks)
    nrng = np.random.default_rng(chunks)
    collection = open_collection(loc, create=True)
    files: dict[str, dict] = {}
    batch = 5000
    t = time.perf_counter()
    # --reuse: keep the chunks an interrupted run wrote (ids are deterministic) and write the rest
    written = collection.count() if reuse else 0
    resume_at = min(written - written % 4, chunks)
    for n in range(resume_at):
        rel = f"synthetic/{n // 4:07d}.txt"
        files.setdefault(rel, {"hash": f"h{n // 4}", "ids": []})["ids"].append(f"c{n:09d}")
    for start in range(resume_at, chunks, batch):
        size = min(batch, chunks - start)
        ids = [f"c{n:09d}" for n in range(start, start + size)]
        texts = [" ".join(rng.choice(sentences) for _ in range(5))[:700] for _ in ids]
        vectors = nrng.standard_normal((size, 256)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = []
        for n in range(start, start + size):
            rel = f"synthetic/{n // 4:07d}.txt"
            files.setdefault(rel, {"hash": f"h{n // 4}", "ids": []})["ids"].append(f"c{n:09d}")
            metas.append({"file": rel, "title": rel, "date": "", "date_epoch": 0, "start": 0, "end": len(texts[n - start]),
                          "chunk_no": n % 4, "content_hash": "", "file_hash": f"h{n // 4}"})
        collection.upsert(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
        if (start + size) % 50000 == 0:
            print(f"{start + size} chunks, {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    store_s = time.perf_counter() - t
    write_json_atomic(loc.manifest_path, {"fingerprint": loc.fingerprint, "embedder": settings.index.embedder,
                                          "files": files, "version": manifest_version(files)})
    t = time.perf_counter()
    shutil.rmtree(keyword_root(loc.root), ignore_errors=True)
    ensure_keyword_index(loc, files, settings, collection)
    keyword_s = time.perf_counter() - t
    result = {"mode": "synthetic", "chunks": chunks, "chroma_write_s": store_s, "reused_chunks": resume_at,
              "keyword_rebuild_from_store_s": keyword_s}
    result.update(_probe(index_dir))
    return result


def compare_probes(work: Path, commit: str, rounds: int, out: str) -> None:
    """Old and new code's cold start on the same indexes, alternating, back to back in one run."""
    import tempfile

    results: dict = {"commit": commit, "load_avg_start": os.getloadavg()[0], "probes": {}}
    with tempfile.TemporaryDirectory(prefix="scale-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "assistant"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for index in sorted(work.glob("index-*")):
            rows = results["probes"][index.name] = {"old": [], "new": []}
            for _ in range(rounds):
                for side, root in (("old", Path(tmp)), ("new", REPO)):
                    rows[side].append(_probe(index, root))
                    print(index.name, side, json.dumps(rows[side][-1]), file=sys.stderr, flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=1))
    if out:
        Path(out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files-chunks", default="10000,100000")
    parser.add_argument("--synthetic-chunks", default="1000000")
    parser.add_argument("--work", default="/tmp/assistant-scale")
    parser.add_argument("--out", default="")
    parser.add_argument("--reuse", action="store_true",
                        help="synthetic: keep the chunks an interrupted run already wrote and write only the rest")
    parser.add_argument("--probe-only", action="store_true",
                        help="only re-measure cold start, warm search and RSS on the indexes already in --work")
    parser.add_argument("--compare-old", default="",
                        help="with --probe-only: probe each index alternately with this commit's code "
                             "(git archive) and the working tree, --rounds times each")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.probe_only and args.compare_old:
        compare_probes(Path(args.work), args.compare_old, args.rounds, args.out)
        return
    if args.probe_only:
        probes = {p.name: _probe(p) for p in sorted(Path(args.work).glob("index-*")) if p.is_dir()}
        print(json.dumps({"load_avg": os.getloadavg()[0], "probes": probes}, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps({"load_avg": os.getloadavg()[0], "probes": probes}, indent=1) + "\n")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
               "load_avg_start": os.getloadavg()[0], "runs": []}
    for n in [int(x) for x in args.files_chunks.split(",") if x]:
        results["runs"].append(files_run(n, work))
        print(json.dumps(results["runs"][-1]), flush=True)
    for n in [int(x) for x in args.synthetic_chunks.split(",") if x]:
        results["runs"].append(synthetic_run(n, work, reuse=args.reuse))
        print(json.dumps(results["runs"][-1]), flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
