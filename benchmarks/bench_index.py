"""Indexing benchmark: pipeline throughput against the raw embedder, re-index cost, CLI start-up, memory.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_index.py [--chunks 3000] [--write]

In one process it
  1. generates a corpus of about --chunks chunks from the sample articles (sentences shuffled,
     names swapped, a counter added) in a temp folder;
  2. (a) encodes exactly the chunk texts the pipeline produces with sentence-transformers
     `model.encode` (same model, batch size and thread count as the pipeline), once before and
     once after (b), and uses the mean (other work on the machine drifts);
  3. (b) runs `build_index` on a fresh index folder (model load, cleaning, chunking, hashing,
     embedding, Chroma writes, manifest commits: everything);
  4. (c) re-indexes the unchanged corpus;
  5. (d) times `assistant --help` (median of 5 subprocess runs);
  6. (e) reads the peak RSS of this process.

`--compare` instead runs whole builds side by side, each in a fresh process (so each has its own
peak RSS), back to back in one invocation: `old:SPEC` runs the code of a git commit (`--old-commit`,
unpacked with `git archive` into a temp folder), `new:SPEC` the working tree. Each builds a fresh
index of the same folder (the first --files files of --corpus, copied), then re-indexes it unchanged:

  benchmarks/bench_index.py --corpus ../shared/corpora/bbc --files 250 --old-commit e2bfb64 \
      --compare old:local:all-MiniLM-L6-v2,new:local:all-MiniLM-L6-v2@onnx,new:local:all-MiniLM-L6-v2@onnx-int8
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.indexing.chunking import split_sentences  # noqa: E402
from assistant.reading.cleaning import clean_text  # noqa: E402
from assistant.indexing.build import build_index  # noqa: E402
from assistant.indexing.files import file_digest, make_chunks, walk_corpus  # noqa: E402
from assistant.reading.loaders import load_document, read_metadata  # noqa: E402
from assistant.settings import Settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Indexing"
# Names swapped between generated articles so near-duplicates still differ in content.
SWAPS = [("Hayashi", "Iwaya"), ("Qin Gang", "Wang Yi"), ("Beijing", "Tokyo"), ("Kishida", "Ishiba"),
         ("Li Qiang", "Xi Jinping"), ("Fukushima", "Okinawa")]


def generate_corpus(folder: Path, target_chunks: int, settings: Settings, seed: int = 13) -> int:
    """Write perturbed copies of the sample articles until they make about `target_chunks` chunks."""
    samples = [clean_text(p.read_text(encoding="utf-8")) for p in sorted(Path(settings.index.corpus_dir).glob("*.txt"))]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = n = 0
    while chunks < target_chunks:
        source = samples[n % len(samples)]
        sentences = [source[s.start:s.end] for s in split_sentences(source)]
        rng.shuffle(sentences)
        text = "\n\n".join(" ".join(sentences[i:i + 3]) for i in range(0, len(sentences), 3))
        for a, b in SWAPS:
            if rng.random() < 0.5:
                text = text.replace(a, "\0").replace(b, a).replace("\0", b)
        text = f"Dispatch {n} from the regional desk.\n\n{text}\n"
        path = folder / f"{n // 100:02d}" / f"article_{n:05d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        chunks += len(make_chunks(path.name, text, "x", "", "", settings))
        n += 1
    return n


def pipeline_texts(root: Path, settings: Settings) -> list[str]:
    """The chunk texts `build_index` embeds for this folder, in its order."""
    metadata = read_metadata(root)
    texts: list[str] = []
    for path, rel, reason in walk_corpus(root):
        if reason:
            continue
        meta = metadata.get(rel)
        doc = load_document(path, rel, settings.index.max_file_bytes, meta)
        texts.extend(c.text for c in make_chunks(rel, doc.text, file_digest(path, meta), doc.title,
                                                  doc.date, settings))
    return texts


class RawEncoder:
    """sentence-transformers with the pipeline's model, batch size and thread count."""

    def __init__(self, settings: Settings) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        from assistant.backends.embedders import local_model_path

        hf_logging.disable_progress_bar()
        torch.set_num_threads(max(1, settings.model.n_threads))
        self.batch = settings.index.embed_batch_size
        self.model = SentenceTransformer(str(local_model_path(settings.index.embedder.partition(":")[2])), device="cpu")
        self.model.encode(["warm up"] * 8, batch_size=self.batch)

    def seconds(self, texts: list[str]) -> float:
        """Wall time of one `model.encode` over all texts."""
        started = time.perf_counter()
        self.model.encode(texts, batch_size=self.batch, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=False)
        return time.perf_counter() - started


def _assistant_command() -> list[str]:
    exe = Path(sys.executable).parent / "assistant"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "assistant.interfaces.cli"]


def cli_index_seconds(corpus: Path, settings: Settings) -> float:
    """Wall time of `assistant index CORPUS` in a fresh process (start-up and imports included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_INDEX_DIR=settings.index.index_dir, ASSISTANT_EMBEDDER=settings.index.embedder, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    subprocess.run([*_assistant_command(), "index", str(corpus), "--json"], check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def help_seconds(runs: int = 5) -> float:
    """Median wall time of `assistant --help` in a fresh process."""
    command = _assistant_command()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*command, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def render(rows: list[tuple[str, str, str, str]], notes: list[str]) -> str:
    """The Markdown section for RESULTS.md."""
    lines = [HEADING, "", *notes, "", "| Measure | Result | Goal | Met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Replace (or append) the Indexing section of RESULTS.md, leaving other sections alone."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


CHILD = r"""
import json, os, resource, sys, time
corpus, index_dir, embedder = sys.argv[1:4]
from assistant.indexing.build import build_index
from assistant.settings import Settings
settings = Settings.from_env(environ={}, index_dir=index_dir, embedder=embedder)
started = time.perf_counter()
report = build_index(corpus, settings=settings)
full = time.perf_counter() - started
started = time.perf_counter()
again = build_index(corpus, settings=settings)
reindex = time.perf_counter() - started
assert again.embedded_chunks == 0 and again.unchanged == report.added, again
print(json.dumps({"seconds": full, "chunks": report.chunks, "files": report.added, "reindex_s": reindex,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


QUALITY = r"""
import json, sys
from assistant.answering.ask import Assistant
from assistant.evaluate import evidence, metrics
from assistant.evaluate.dataset import load_dataset
from assistant.search.retrieval import get_retriever
from assistant.settings import Settings
dataset, corpus, index_dir, embedder = sys.argv[1:5]
settings = Settings.from_env(environ={}, corpus_dir=corpus, index_dir=index_dir, embedder=embedder)
cases = [c for c in load_dataset(dataset) if c.answerable and c.sources]
retriever = get_retriever(settings)
hits = {k: 0.0 for k in (1, 3, 5)}
for case in cases:
    files = [p.file for p in retriever.search(case.question, k=5)]
    for k in hits:
        hits[k] += metrics.hit_at_k(files, set(case.sources), k)
summary = evidence.summarise(evidence.measure(Assistant(settings), load_dataset(dataset)))
print(json.dumps({"cases": len(cases), **{f"file_hit@{k}": v / len(cases) for k, v in hits.items()},
                  "evidence_all_in": summary["all_in"], "evidence_any_in": summary["any_in"],
                  "evidence_answer_in": summary["answer_in"], "evidence_n": summary["n"]}))
"""


def quality(args: argparse.Namespace) -> None:
    """Retrieval on a gold set for each EMBEDDER=INDEX_DIR pair: file hit@1/3/5 and evidence recall."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False", PYTHONPATH=str(REPO))
    rows = []
    for pair in args.quality.split(","):
        embedder, _, index_dir = pair.partition("=")
        done = subprocess.run([sys.executable, "-c", QUALITY, args.dataset, args.corpus, index_dir, embedder],
                              check=True, capture_output=True, text=True, env=env, cwd=REPO)
        rows.append({"embedder": embedder, "index_dir": index_dir, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [f"`benchmarks/bench_index.py --quality ... --dataset {args.dataset} --corpus {args.corpus}`, "
             f"run {date.today().isoformat()}: {rows[0]['cases']} answerable cases with gold files "
             f"({rows[0]['evidence_n']} with gold evidence sentences).", "",
             "| embedder | file hit@1 | file hit@3 | file hit@5 | evidence all in | evidence any in | answer in |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['embedder']}` | {r['file_hit@1']:.3f} | {r['file_hit@3']:.3f} | {r['file_hit@5']:.3f} | "
              f"{r['evidence_all_in']:.3f} | {r['evidence_any_in']:.3f} | {r['evidence_answer_in']:.3f} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def compare(args: argparse.Namespace) -> None:
    """Whole builds of one folder by old and new code and embedders, back to back (see the docstring)."""
    import json
    import shutil

    runs = [(side, spec) for side, _, spec in (item.partition(":") for item in args.compare.split(","))]
    load_start = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        corpus = Path(tmp) / "corpus"
        chosen = sorted(p for p in Path(args.corpus).rglob("*.txt") if p.is_file())[:args.files]
        for path in chosen:
            dest = corpus / path.relative_to(args.corpus)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        old_root = Path(tmp) / "old"
        old_root.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.old_commit, "assistant"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
        for n, (side, spec) in enumerate(runs):
            root = old_root if side == "old" else REPO
            env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
            env.update(PYTHONPATH=str(root), HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
            load = os.getloadavg()[0]
            done = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(Path(tmp) / f"index-{n}"), spec],
                                  check=True, capture_output=True, text=True, env=env, cwd=tmp)
            row = {"side": side, "embedder": spec, "load_avg_start": load, **json.loads(done.stdout.strip().splitlines()[-1])}
            row["chunks_per_s"] = row["chunks"] / row["seconds"]
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    base = next((r for r in results if r["side"] == "old"), results[0])
    lines = [f"`benchmarks/bench_index.py --corpus {args.corpus} --files {args.files} --old-commit {args.old_commit} "
             f"--compare {args.compare}`, run {date.today().isoformat()}: {base['files']} files, {base['chunks']} chunks, "
             f"{os.cpu_count()} CPUs, batch 64, 2 threads; each build a fresh process, one after another. "
             f"Load average (1 min) {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
             "(the machine was shared with other agents' evaluation runs).", "",
             "| code | embedder | full build | chunks/s | vs the old row | unchanged re-index | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for row in results:
        lines.append(f"| {row['side']} | `{row['embedder']}` | {row['seconds']:.1f} s | {row['chunks_per_s']:.1f} | "
                     f"{row['chunks_per_s'] / base['chunks_per_s']:.2f}x | {row['reindex_s']:.2f} s "
                     f"({row['reindex_s'] / row['seconds']:.1%}) | {row['peak_rss_mb']:.0f} MB"
                     + (f" (a child: {row['children_peak_rss_mb']:.0f} MB)" if row.get("children_peak_rss_mb") else "")
                     + " |")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    global HEADING
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=3000, help="about how many chunks to generate")
    parser.add_argument("--corpus", default="", help="index this folder (e.g. ../shared/corpora/bbc) instead of a generated one")
    parser.add_argument("--skip-raw", action="store_true", help="skip (a), the raw encode (it doubles the run time)")
    parser.add_argument("--write", action="store_true", help=f"update the '{HEADING}' section of {RESULTS.name}")
    parser.add_argument("--compare", default="", help="side:embedder,... builds to run back to back (old: or new:)")
    parser.add_argument("--old-commit", default="HEAD", help="the commit whose code the old: builds run")
    parser.add_argument("--files", type=int, default=0, help="with --compare: the first N .txt files of --corpus")
    parser.add_argument("--out", default="", help="with --compare: write the rows as JSON here")
    parser.add_argument("--quality", default="", help="EMBEDDER=INDEX_DIR,...: retrieval on --dataset with each index")
    parser.add_argument("--dataset", default=str(REPO / "evals" / "datasets" / "bbc_dev.jsonl"))
    args = parser.parse_args()
    if args.quality:
        quality(args)
        return
    if args.compare:
        if not args.corpus:
            parser.error("--compare needs --corpus")
        args.files = args.files or 10**9
        compare(args)
        return
    if args.corpus:
        HEADING = f"## Indexing a real folder ({Path(args.corpus).name})"

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        settings = Settings.from_env(environ={}, index_dir=str(Path(tmp) / "index"))
        corpus = Path(args.corpus) if args.corpus else Path(tmp) / "corpus"
        files = (sum(1 for _p, _r, why in walk_corpus(corpus) if not why) if args.corpus
                 else generate_corpus(corpus, args.chunks, settings))
        texts = pipeline_texts(corpus, settings)
        print(f"corpus: {files} files, {len(texts)} chunks; embedder {settings.index.embedder}, "
              f"batch {settings.index.embed_batch_size}, {settings.model.n_threads} threads", file=sys.stderr)

        encoder = None if args.skip_raw else RawEncoder(settings)
        raw_before = encoder.seconds(texts) if encoder else float("nan")
        print(f"(a) raw encode: {raw_before:.1f} s, {len(texts) / raw_before:.1f} chunks/s", file=sys.stderr)

        started = time.perf_counter()
        report = build_index(corpus, settings=settings)
        full = time.perf_counter() - started
        assert report.chunks == len(texts) and report.embedded_chunks == len(texts), report
        rate = len(texts) / full
        print(f"(b) pipeline: {full:.1f} s, {rate:.1f} chunks/s", file=sys.stderr)

        # Raw encode again after the pipeline: the mean of the two brackets any drift in machine load.
        raw_after = encoder.seconds(texts) if encoder else float("nan")
        print(f"(a) raw encode again: {raw_after:.1f} s, {len(texts) / raw_after:.1f} chunks/s", file=sys.stderr)
        raw = (raw_before + raw_after) / 2
        raw_rate = len(texts) / raw
        del encoder
        if args.skip_raw:
            raw_rate = float("nan")

        started = time.perf_counter()
        again = build_index(corpus, settings=settings)
        reindex = time.perf_counter() - started
        assert again.unchanged == report.added and again.embedded_chunks == 0, again
        print(f"(c) unchanged re-index: {reindex:.2f} s", file=sys.stderr)
        cli_reindex = cli_index_seconds(corpus, settings)
        print(f"(c) unchanged re-index through the CLI: {cli_reindex:.2f} s", file=sys.stderr)

    cli = help_seconds()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    ratio = rate / raw_rate
    rows = [
        ("(a) raw `model.encode` of the pipeline's chunk texts (mean of a run before and after (b))",
         f"{raw_rate:.1f} chunks/s ({raw_before:.1f} s, {raw_after:.1f} s)", "", ""),
        ("(b) whole pipeline, `build_index` on a fresh index", f"{rate:.1f} chunks/s ({full:.1f} s)", "", ""),
        ("pipeline / raw encode", f"{ratio:.0%}", ">= 80%", "yes" if ratio >= 0.8 else "no"),
        ("(c) re-index unchanged corpus, % of full index", f"{reindex / full:.1%} ({reindex:.2f} s)", "< 5%",
         "yes" if reindex / full < 0.05 else "no"),
        ("(c) the same through `assistant index` in a fresh process", f"{cli_reindex / full:.1%} ({cli_reindex:.2f} s)",
         "< 5%", "yes" if cli_reindex / full < 0.05 else "no"),
        ("(d) `assistant --help`, median of 5", f"{cli:.2f} s", "< 0.5 s", "yes" if cli < 0.5 else "no"),
        ("(e) peak RSS of the benchmark process", f"{peak_mb:.0f} MB", "", ""),
    ]
    if args.skip_raw:
        rows = [r for r in rows if not r[0].startswith(("(a)", "pipeline / raw"))]
    notes = [
        (f"`benchmarks/bench_index.py --corpus {args.corpus}`, run {date.today().isoformat()}: {files} files "
         if args.corpus else
         f"`benchmarks/bench_index.py --chunks {args.chunks}`, run {date.today().isoformat()}: {files} generated files")
        + f", {len(texts)} chunks (chunk_size {settings.index.chunk_size}, overlap {settings.index.chunk_overlap}), "
        f"embedder `{settings.index.embedder}`, batch {settings.index.embed_batch_size}, {settings.model.n_threads} torch threads, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, local Chroma. "
        f"Load average (1 min) {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: "
        "other work on the machine slows (a) and (b) alike, which is why (a) is run on both sides of (b).",
    ]
    section = render(rows, notes)
    print(section)
    if args.write:
        write_section(section)
        print(f"updated {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
