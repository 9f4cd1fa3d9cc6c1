"""`assistant ask` through a running `assistant serve` against a warm in-process `Assistant.ask`.

    python benchmarks/bench_server.py --limit 10 --out benchmarks/results/server-YYYYMMDD.json

Default local models, the sample corpus and its index (built first if missing). The server is a
real `assistant serve` subprocess; each client question is a new `assistant ask` process with
ASSISTANT_SERVER_URL set, timed from spawn to exit (what a user waits). The in-process side is an
`Assistant` in this process, warmed by one question outside the set. The two alternate per
question, so load on the machine falls on both alike. Also: `assistant --help` (median of 5), and
the peak RSS of the server process (VmHWM) and of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--dataset", default=str(REPO / "evals" / "datasets" / "sample.jsonl"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [r["question"] for r in rows][: args.limit + 1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ASSISTANT_SERVER_URL", None)
    assistant_cli = [sys.executable, "-m", "assistant.interfaces.cli"]

    helps = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([*assistant_cli, "--help"], check=True, capture_output=True, env=env, cwd=REPO)
        helps.append(time.perf_counter() - t)

    from assistant.answering.ask import Assistant
    from assistant.settings import Settings

    local = Assistant(Settings.from_env())
    local.ask(questions[0])  # loads models and builds the index when missing

    port = _free_port()
    server = subprocess.Popen([*assistant_cli, "serve", "--port", str(port)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    client_env = {**env, "ASSISTANT_SERVER_URL": url}
    subprocess.run([*assistant_cli, "ask", questions[0]], check=True, capture_output=True, env=client_env, cwd=REPO)

    cases = []
    try:
        for q in questions[1:]:
            t = time.perf_counter()
            answer = local.ask(q)
            inproc = time.perf_counter() - t
            t = time.perf_counter()
            out = subprocess.run([*assistant_cli, "ask", q, "--json"], capture_output=True, text=True,
                                 env=client_env, cwd=REPO)
            via = time.perf_counter() - t
            remote = json.loads(out.stdout) if out.returncode == 0 else {"answer": out.stderr}
            cases.append({"question": q, "in_process_s": inproc, "via_server_s": via,
                          "same_answer": remote.get("answer") == answer.answer})
            print(json.dumps(cases[-1]), flush=True)
        server_rss = _vm_hwm_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    inproc = [c["in_process_s"] for c in cases]
    via = [c["via_server_s"] for c in cases]
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "questions": len(cases),
              "help_median_s": statistics.median(helps),
              "in_process_p50_s": statistics.median(inproc), "via_server_p50_s": statistics.median(via),
              "in_process_mean_s": statistics.mean(inproc), "via_server_mean_s": statistics.mean(via),
              "ratio_of_means": statistics.mean(via) / statistics.mean(inproc),
              "same_answers": sum(c["same_answer"] for c in cases),
              "server_peak_rss_mb": server_rss,
              "bench_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "load_avg_end": os.getloadavg()[0], "cases": cases}
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
