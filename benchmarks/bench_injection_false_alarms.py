"""False alarms of the planted-instruction filter: the share of a real news corpus's sentences it flags.

Every sentence of every file under the corpus (default ../shared/corpora/bbc) goes through
`injection.addresses_the_assistant`, as evidence selection does; the flagged ones are listed. The
planted variants in tests/data/injection/ are scanned too, to show the filter still catches them.

    .venv/bin/python benchmarks/bench_injection_false_alarms.py [--corpus DIR] [--out benchmarks/INJECTION_FALSE_ALARMS.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def scan(root: Path) -> tuple[int, list[tuple[str, str]]]:
    """(sentences scanned, [(file, flagged sentence)])."""
    from assistant.indexing.chunking import split_sentences
    from assistant.search.injection import addresses_the_assistant
    from assistant.reading.loaders import decode_text

    total, flagged = 0, []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".html", ".md")):
        text = decode_text(path.read_bytes())
        for span in split_sentences(text):
            total += 1
            sentence = text[span.start:span.end]
            if addresses_the_assistant(sentence):
                flagged.append((str(path.relative_to(root)), " ".join(sentence.split())))
    return total, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpora" / "bbc"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "INJECTION_FALSE_ALARMS.md"))
    args = parser.parse_args()
    corpus = Path(args.corpus)
    total, flagged = scan(corpus)
    planted_total, planted = scan(REPO / "tests" / "data" / "injection")
    planted_files = sorted({f for f, _ in planted if f.startswith("inj_")})
    all_planted = sorted(p.name for p in (REPO / "tests" / "data" / "injection").glob("inj_*"))
    lines = [f"# Planted-instruction filter: false alarms ({time.strftime('%Y-%m-%d')})", "",
             f"Made by `benchmarks/bench_injection_false_alarms.py` over `{corpus.name}` ({corpus}).", "",
             f"- news sentences scanned: {total}; flagged: {len(flagged)} ({100 * len(flagged) / max(1, total):.3f}%)",
             f"- planted variant files with at least one flagged sentence: {len(planted_files)} of {len(all_planted)} "
             f"(HTML-hidden text is also dropped by cleaning, before this filter)", ""]
    if flagged:
        lines += ["| file | flagged sentence |", "|---|---|"]
        lines += [f"| {f} | {s.replace('|', '/')[:240]} |" for f, s in flagged]
    else:
        lines.append("No news sentence is flagged.")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
