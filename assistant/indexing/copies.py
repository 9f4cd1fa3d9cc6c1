"""Copies: articles carried by several files (wire copy, republished or lightly edited stories).

Each file gets a MinHash signature (datasketch) of its word 3-shingles (stemmed content words, so
a re-punctuated or re-capitalised copy still matches). Candidate pairs come from LSH banding of the
signatures; a pair whose estimated Jaccard similarity reaches the threshold joins one group. A
group's representative is its first file by name; retrieval gives a group one prompt slot. The
signature size, bands and threshold are the index settings `copies_num_perm`, `copies_bands` and
`copies_threshold` (their reasons are beside them in assistant/settings.py)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from ..settings import IndexSettings

_SEED = 1


@functools.lru_cache(maxsize=2)
def _prototype(num_perm: int) -> Any:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=_SEED, hashfunc=int)


def shingle_hashes(tokens: Sequence[int]) -> np.ndarray:
    """32-bit hashes of consecutive token-id triples (a text shorter than 3 tokens: its tokens)."""
    t = np.asarray(tokens, dtype=np.uint64)
    if t.shape[0] < 3:
        return t.astype(np.uint32)
    mixed = (t[:-2] * np.uint64(1_000_003) + t[1:-1]) * np.uint64(1_000_003) + t[2:]
    return (mixed & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def signature(tokens: Sequence[int], num_perm: int = IndexSettings.copies_num_perm) -> np.ndarray:
    """The MinHash signature (`num_perm` uint32 values) of one article's token ids."""
    from datasketch import MinHash

    proto = _prototype(num_perm)
    m = MinHash(num_perm=num_perm, seed=_SEED, hashfunc=int, permutations=proto.permutations, scheme=proto.scheme)
    values = np.unique(shingle_hashes(tokens))
    if values.size:
        m.update_batch(values.tolist())
    return np.asarray(m.hashvalues, dtype=np.uint32)


def groups(signatures: np.ndarray, bands: int = IndexSettings.copies_bands,
           threshold: float = IndexSettings.copies_threshold) -> np.ndarray:
    """Group number of each row (files in the same group are copies); singletons keep their own row.
    The signatures are cut into `bands` bands of equal width (the columns left over are not banded)."""
    n = signatures.shape[0]
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    if n < 2:
        return parent
    rows = signatures.shape[1] // bands
    empty = (signatures == np.iinfo(np.uint32).max).all(axis=1)  # no shingles at all: never a copy
    for band in range(bands):
        part = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows]).view(np.dtype((np.void, 4 * rows)))
        keys = part.ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        for i in same:
            a, b = int(order[i]), int(order[i + 1])
            if empty[a] or empty[b]:
                continue
            if np.mean(signatures[a] == signatures[b]) >= threshold:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])
