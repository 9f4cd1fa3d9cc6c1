"""How copy grouping behaves on the BBC corpus at several thresholds.

    python benchmarks/bench_copies.py > benchmarks/COPIES.md

Against two references the corpus itself gives: groups of byte-identical files, and groups of
files sharing a title line. Also times the signatures and the grouping."""

from __future__ import annotations

import collections
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.indexing import copies  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from assistant.text_utils import content_terms  # noqa: E402

BBC = REPO.parent / "shared" / "corpora" / "bbc"


def main() -> None:
    index = Settings().index
    files = sorted(BBC.rglob("*.txt"))
    raw = [f.read_bytes() for f in files]
    texts = [b.decode("utf-8", "replace") for b in raw]
    vocab: dict[str, int] = {}
    t = time.perf_counter()
    tokens = [[vocab.setdefault(w, len(vocab)) for w in content_terms(text)] for text in texts]
    sigs = np.stack([copies.signature(tok, index.copies_num_perm) for tok in tokens])
    sig_s = time.perf_counter() - t
    by_bytes = collections.defaultdict(list)
    by_title = collections.defaultdict(list)
    for n, (b, text) in enumerate(zip(raw, texts)):
        by_bytes[hashlib.sha256(b).hexdigest()].append(n)
        by_title[text.splitlines()[0].strip()].append(n)
    byte_groups = [g for g in by_bytes.values() if len(g) > 1]
    title_groups = [g for g in by_title.values() if len(g) > 1]
    print("# Copy grouping on the BBC corpus\n")
    print(f"`benchmarks/bench_copies.py`, {time.strftime('%Y-%m-%d')}: {len(files)} files; "
          f"{len(byte_groups)} groups of byte-identical files ({sum(map(len, byte_groups))} files); "
          f"{len(title_groups)} titles on more than one file ({sum(map(len, title_groups))} files). "
          f"MinHash signatures ({index.copies_num_perm} permutations, word 3-shingles of stemmed content words) "
          f"took {sig_s:.1f} s for all files, including tokenising.\n")
    print("| Jaccard threshold | groups | files in groups | byte-identical groups kept whole | same-title groups kept whole | groups whose files carry more than one title | grouping time |")
    print("|---|---|---|---|---|---|---|")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        t = time.perf_counter()
        g = copies.groups(sigs, index.copies_bands, threshold)
        took = time.perf_counter() - t
        members = collections.defaultdict(list)
        for n, x in enumerate(g):
            members[int(x)].append(n)
        multi = [m for m in members.values() if len(m) > 1]
        whole_bytes = sum(1 for bg in byte_groups if len({g[n] for n in bg}) == 1)
        whole_titles = sum(1 for tg in title_groups if len({g[n] for n in tg}) == 1)
        mixed = sum(1 for m in multi if len({texts[n].splitlines()[0].strip() for n in m}) > 1)
        mark = " (shipped)" if threshold == index.copies_threshold else ""
        print(f"| {threshold}{mark} | {len(multi)} | {sum(map(len, multi))} | {whole_bytes} of {len(byte_groups)} | "
              f"{whole_titles} of {len(title_groups)} | {mixed} | {took * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
