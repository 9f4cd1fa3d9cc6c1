"""Scale-out on one machine: embeddings from an OpenAI-compatible server, and Chroma as a server.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scaleout.py [--corpus ../shared/corpora/bbc] [--files 250] [--write]

The first --files .txt files of --corpus (sorted by relative path; a folder of `<category>/<n>.txt`
files or a flat one) are copied into a temp folder. Two servers are started on 127.0.0.1, each a
child process on a free port, and stopped at the end whatever happens:

- an OpenAI-compatible embeddings server (FastAPI + uvicorn, this file's `--serve-embeddings`) that
  serves the packaged local model (--embedder, default `local:all-MiniLM-L6-v2@onnx`);
- `chroma run --path TMP --host 127.0.0.1 --port PORT`, waited for until its heartbeat answers.

Then, back to back, each in a fresh child process (so each has its own peak RSS), `build_index` of
the copied folder into a fresh index folder, --rounds times in turn:

  local        the local embedder, local Chroma files (the baseline of both comparisons);
  http-embed   `openai-compatible:all-MiniLM-L6-v2` with `openai_base_url=http://127.0.0.1:PORT/v1`
               (the same model behind the server), local Chroma files;
  chroma-srv   the local embedder, `chroma_url=http://127.0.0.1:PORT` (chunks, vectors and manifest
               on the server; the keyword index stays in the index folder).

Each build child first makes its embedder ready (model load, or the first HTTP request) and times
that apart; the build time is `build_index` with that embedder handed in. The embedding server has
loaded and warmed its model before the first build, as a running server would have.

Then, for each index of the first round, a new process measures the cold start (process spawn to
the first `Retriever(settings).search(q)` result, timed as bench_scale.py's probe does) and warm
search p50/p95 over --queries queries (the first lines of the chosen files, then their second lines,
and so on). The http-embed probe embeds its queries through the server too.

On one machine the servers share the CPU with the client: the embedding server's
model runs on the same cores the indexer would otherwise use. These figures therefore show what the
protocols cost (serialising vectors to JSON, HTTP round trips, Chroma's client-server path), not a
scale-out gain; a gain needs the server on other hardware. The Markdown table is printed with the
machine (cores, load average at the start and end, `platform`); --write appends the JSON record to
benchmarks/results/scaleout-YYYYMMDD.jsonl.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations (`Request`), which
# are imported inside serve_embeddings and so must be evaluated where they are defined.
import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from bench_scale import PROBE  # cold start and warm search in a new process, settings as JSON

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(REPO))

REMOTE_MODEL = "all-MiniLM-L6-v2"
READY_TIMEOUT = 180.0  # the machine is busy: model load and `chroma run` start can take a while

# One build in a fresh process (the pattern of bench_index.py's --compare CHILD, with the settings
# given as JSON so that a build can name a server URL).
BUILD = r"""
import json, resource, sys, time
corpus, overrides = sys.argv[1], json.loads(sys.argv[2])
from assistant.backends import get_embedder
from assistant.indexing.build import build_index
from assistant.settings import Settings
settings = Settings.from_env(environ={}, **overrides)
started = time.perf_counter()
embedder = get_embedder(settings)
embedder.embed(["warm up"])
ready = time.perf_counter() - started
started = time.perf_counter()
report = build_index(corpus, settings=settings, embedder=embedder)
seconds = time.perf_counter() - started
print(json.dumps({"embedder_ready_s": ready, "seconds": seconds, "chunks": report.chunks, "files": report.added,
                  "embedded_chunks": report.embedded_chunks,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# --- the embeddings server (a child process: this file with --serve-embeddings) -----------------
# FastAPI + uvicorn rather than tests/loopback.py's `embeddings_handler`: that handler imports
# cleanly without pytest (stdlib only), but it is a ThreadingHTTPServer fake made for tests, while
# an ASGI server is what a real embeddings service (TEI, Infinity, vLLM) puts in front of a model.


def serve_embeddings(port: int, embedder_spec: str) -> None:
    """Serve POST /v1/embeddings (OpenAI's shape, float or base64 vectors) with the local embedder;
    GET /health answers once the model is loaded and warm, GET /stats gives requests and peak RSS."""
    import base64

    import numpy as np
    import uvicorn
    from fastapi import FastAPI, Request, Response
    from starlette.concurrency import run_in_threadpool

    from assistant.backends import get_embedder
    from assistant.settings import Settings

    embedder = get_embedder(Settings.from_env(environ={}, embedder=embedder_spec))
    embedder.embed(["warm up"] * 8)  # load the model before /health says yes
    stats = {"requests": 0, "inputs": 0, "base64": 0, "embed_s": 0.0}
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    def report() -> dict[str, Any]:
        return {**stats, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = json.loads(await request.body())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        started = time.perf_counter()
        vectors = await run_in_threadpool(embedder.embed, inputs)
        stats["embed_s"] += time.perf_counter() - started
        stats["requests"] += 1
        stats["inputs"] += len(inputs)
        as_base64 = body.get("encoding_format") == "base64"
        stats["base64"] += as_base64
        data = []
        for n, vector in enumerate(vectors):
            value: Any = (base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
                          if as_base64 else vector)
            data.append({"object": "embedding", "index": n, "embedding": value})
        # json.dumps directly: FastAPI's jsonable_encoder walks every float and is slow on 64 x 384.
        payload = json.dumps({"object": "list", "data": data, "model": body.get("model", ""),
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        return Response(payload, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- helpers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    return env


def _wait_ready(url: str, process: subprocess.Popen, log: Path, what: str) -> float:
    """Poll `url` until it answers 200; seconds waited. Fails if the process exits or time runs out."""
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > READY_TIMEOUT:
            raise SystemExit(f"{what} did not answer {url} within {READY_TIMEOUT:.0f} s: "
                             f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.25)


def _stop(process: subprocess.Popen | None) -> None:
    """Stop a server child: SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def _server_stats(embed_url: str) -> dict[str, Any]:
    """The embedding server's counters so far (requests, texts, seconds in the model, peak RSS)."""
    with urllib.request.urlopen(f"{embed_url}/stats", timeout=10) as response:
        return json.loads(response.read())


def _vm_hwm_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a running process in MB (Linux), NaN if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _chroma_cli() -> str:
    beside = Path(sys.executable).parent / "chroma"
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if not found:
        raise SystemExit("the `chroma` command is not installed (it comes with the chromadb package)")
    return found


def choose_files(corpus: Path, n: int) -> list[Path]:
    """The first n .txt files under corpus by relative path (nested `<category>/<n>.txt` or flat)."""
    return sorted((p for p in corpus.rglob("*.txt") if p.is_file()), key=lambda p: p.relative_to(corpus).as_posix())[:n]


def make_queries(files: list[Path], n: int) -> list[str]:
    """Up to n queries: the first non-empty line (the title) of each file, then each file's second
    line, and so on; each cut to its first 200 characters."""
    lines = [[line.strip()[:200] for line in p.read_text(encoding="utf-8", errors="replace").splitlines()
              if len(line.strip()) >= 8] for p in files]
    queries: list[str] = []
    depth = 0
    while len(queries) < n and any(len(ls) > depth for ls in lines):
        queries += [ls[depth] for ls in lines if len(ls) > depth and ls[depth] not in queries]
        depth += 1
    return queries[:n]


def run_child(code: str, *argv: str, cwd: str) -> dict[str, Any]:
    """Run `code` in a fresh Python process; its last stdout line is a JSON object."""
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=_child_env(), cwd=cwd)
    if done.returncode:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value != value else format(value, spec)  # NaN -> n/a


# --- the benchmark ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    corpus_src = Path(args.corpus)
    chosen = choose_files(corpus_src, args.files)
    if not chosen:
        raise SystemExit(f"no .txt files under {corpus_src}")
    queries = make_queries(chosen, args.queries)
    record: dict[str, Any] = {
        "benchmark": "scaleout", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "benchmarks/bench_scaleout.py " + " ".join(sys.argv[1:]),
        "corpus": str(args.corpus), "files": len(chosen), "embedder": args.embedder,
        "remote_embedder": f"openai-compatible:{REMOTE_MODEL}", "rounds": args.rounds, "queries": len(queries),
        "cpus": os.cpu_count(), "load_avg_start": list(os.getloadavg()), "platform": platform.platform(),
        "python": platform.python_version(), "builds": [], "probes": {},
    }
    embed_server = chroma_server = None
    tmp = tempfile.mkdtemp(prefix="bench-scaleout-")
    try:
        corpus = Path(tmp) / "corpus"
        for path in chosen:
            dest = corpus / path.relative_to(corpus_src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)

        embed_port, chroma_port = _free_port(), _free_port()
        embed_log, chroma_log = Path(tmp) / "embed-server.log", Path(tmp) / "chroma-server.log"
        with embed_log.open("wb") as log:
            embed_server = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve-embeddings", str(embed_port),
                 "--embedder", args.embedder], stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=tmp)
        with chroma_log.open("wb") as log:
            chroma_server = subprocess.Popen(
                [_chroma_cli(), "run", "--path", str(Path(tmp) / "chroma-db"), "--host", "127.0.0.1",
                 "--port", str(chroma_port)], stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=tmp)
        embed_url, chroma_url = f"http://127.0.0.1:{embed_port}", f"http://127.0.0.1:{chroma_port}"
        record["embed_server_ready_s"] = _wait_ready(f"{embed_url}/health", embed_server, embed_log, "embedding server")
        record["chroma_server_ready_s"] = _wait_ready(f"{chroma_url}/api/v2/heartbeat", chroma_server, chroma_log,
                                                      "chroma server")
        print(f"servers up: embeddings {embed_url} ({record['embed_server_ready_s']:.1f} s), "
              f"chroma {chroma_url} ({record['chroma_server_ready_s']:.1f} s)", file=sys.stderr, flush=True)

        def overrides(kind: str, n: int) -> dict[str, Any]:
            base = {"index_dir": str(Path(tmp) / f"index-{kind}-{n}"), "corpus_dir": str(corpus),
                    "embedder": args.embedder}
            if kind == "http-embed":
                base.update(embedder=f"openai-compatible:{REMOTE_MODEL}", openai_base_url=f"{embed_url}/v1")
            elif kind == "chroma-srv":
                base.update(chroma_url=chroma_url, collection=f"bench-{n}")  # a fresh collection each round
            return base

        kinds = ("local", "http-embed", "chroma-srv")
        for n in range(args.rounds):
            for kind in kinds:
                load = os.getloadavg()[0]
                row = {"kind": kind, "round": n, "load_avg_start": load,
                       **run_child(BUILD, str(corpus), json.dumps(overrides(kind, n)), cwd=tmp)}
                row["chunks_per_s"] = row["chunks"] / row["seconds"]
                record["builds"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        record["embed_server_builds"] = _server_stats(embed_url)  # before the probes send their queries
        for kind in kinds:
            row = run_child(PROBE, repr(time.time()), json.dumps(overrides(kind, 0)), json.dumps(queries), cwd=tmp)
            record["probes"][kind] = row
            print(kind, json.dumps(row), file=sys.stderr, flush=True)

        record["embed_server"] = _server_stats(embed_url)
        record["chroma_server"] = {"peak_rss_mb": _vm_hwm_mb(chroma_server.pid)}
    finally:
        _stop(embed_server)
        _stop(chroma_server)
        shutil.rmtree(tmp, ignore_errors=True)
    record["load_avg_end"] = list(os.getloadavg())
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {}
    for kind in ("local", "http-embed", "chroma-srv"):
        rows = [r for r in record["builds"] if r["kind"] == kind]
        summary[kind] = {key: statistics.median(r[key] for r in rows)
                         for key in ("seconds", "chunks_per_s", "embedder_ready_s", "peak_rss_mb")}
        summary[kind]["chunks"] = rows[0]["chunks"]
        summary[kind]["vs_local"] = summary[kind]["chunks_per_s"] / summary["local"]["chunks_per_s"]
    record["summary"] = summary
    if len({r["chunks"] for r in record["builds"]} | {r["embedded_chunks"] for r in record["builds"]}) != 1:
        print("warning: the builds did not all embed the same chunks: " +
              ", ".join(f"{r['kind']} {r['embedded_chunks']}/{r['chunks']}" for r in record["builds"]), file=sys.stderr)
    return record


def render(record: dict[str, Any]) -> str:
    """The Markdown report of one run."""
    s, probes = record["summary"], record["probes"]
    server_rss = {"local": "", "http-embed": f" + server {record['embed_server']['peak_rss_mb']:.0f} MB",
                  "chroma-srv": f" + server {_fmt(record['chroma_server']['peak_rss_mb'], '.0f')} MB"}
    what = {"local": f"`{record['embedder']}`, local Chroma files",
            "http-embed": f"`{record['remote_embedder']}` on loopback (same model), local Chroma files",
            "chroma-srv": f"`{record['embedder']}`, `chroma run` on loopback"}
    la0, la1 = record["load_avg_start"], record["load_avg_end"]
    lines = [
        f"`{record['command']}`, run {date.today().isoformat()}: {record['files']} files, "
        f"{s['local']['chunks']} chunks; {record['cpus']} CPUs, `{record['platform']}`, Python {record['python']}. "
        f"Load average (1/5/15 min) {la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f} at the start, "
        f"{la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f} at the end. One machine: the servers share the CPU with the "
        "client, so this is the protocols' overhead, not a scale-out gain. "
        + (f"Builds: median of {record['rounds']} rounds, run in turn. " if record["rounds"] > 1 else "")
        + f"Searches: {record['queries']} queries, k=10.",
        "",
        "| setup | chunks | build | chunks/s | vs local | embedder ready | build peak RSS | cold start to 1st search | "
        "warm p50 | warm p95 | search peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("local", "http-embed", "chroma-srv"):
        b, p = s[kind], probes[kind]
        lines.append(f"| {what[kind]} | {b['chunks']} | {b['seconds']:.1f} s | {b['chunks_per_s']:.1f} | "
                     f"{b['vs_local']:.2f}x | {b['embedder_ready_s']:.2f} s | {b['peak_rss_mb']:.0f} MB{server_rss[kind]} | "
                     f"{p['cold_start_s']:.2f} s | {p['warm_p50_ms']:.1f} ms | {p['warm_p95_ms']:.1f} ms | "
                     f"{p['peak_rss_mb']:.0f} MB |")
    es = record["embed_server_builds"]
    http_s = sum(r["seconds"] for r in record["builds"] if r["kind"] == "http-embed")
    lines += ["", f"Embedding server during the http-embed build(s): {es['requests']} requests "
              f"({es['base64']} asked for base64), {es['inputs']} texts, {es['embed_s']:.1f} s inside the model "
              f"of {http_s:.1f} s of build; ready in {record['embed_server_ready_s']:.1f} s. "
              f"`chroma run` ready in {record['chroma_server_ready_s']:.1f} s. "
              f"Top-3 files of the first query: "
              + "; ".join(f"{k} {', '.join(probes[k]['first_top3'])}" for k in probes)
              + f". Peak RSS of the benchmark process itself: {record['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpora" / "bbc"),
                        help="a folder of .txt articles (nested <category>/<n>.txt or flat)")
    parser.add_argument("--files", type=int, default=250, help="index the first N .txt files (by relative path)")
    parser.add_argument("--embedder", default="local:all-MiniLM-L6-v2@onnx",
                        help="the local embedder, and the model the embeddings server serves")
    parser.add_argument("--queries", type=int, default=30, help="warm searches per index")
    parser.add_argument("--rounds", type=int, default=1, help="build each setup this many times, in turn")
    parser.add_argument("--write", action="store_true",
                        help="append the JSON record to benchmarks/results/scaleout-YYYYMMDD.jsonl")
    parser.add_argument("--serve-embeddings", type=int, default=0, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_embeddings:
        serve_embeddings(args.serve_embeddings, args.embedder)
        return
    if not args.embedder.startswith("local:"):
        parser.error("--embedder must be a local: embedder (the server serves it)")
    record = run(args)
    print(render(record))
    if args.write:
        out = RESULTS_DIR / f"scaleout-{date.today().strftime('%Y%m%d')}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        print(f"appended to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
