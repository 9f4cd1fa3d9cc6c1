"""Where an index lives: its fingerprint, folder, manifest and Chroma collection."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.cache import CACHE
from ..reading.cleaning import CLEANING_VERSION
from ..errors import BackendUnavailableError, ConfigError, IndexLockedError, StoreError
from ..settings import IndexSettings

if TYPE_CHECKING:
    from ..settings import Settings

SCHEMA_VERSION = "2"  # 2: Snowball stems and a bm25s keyword index beside the store
MANIFEST = "manifest.json"
# Index settings that shape what an index holds (cleaning rules, copy groups) but became settings after
# indexes were built with their values: one enters the hash only when it differs from its default, so
# an index built with the defaults keeps its folder.
_HASHED_IF_CHANGED = ("clean_prose_min_chars", "clean_ui_min_hits", "copies_num_perm", "copies_bands",
                      "copies_threshold")


def fingerprint(settings: "Settings") -> str:
    """Hash of everything that changes what is stored: embedder, chunking, cleaning, copies, schema."""
    index = settings.index
    key = {"embedder": index.embedder, "chunk_size": index.chunk_size, "chunk_overlap": index.chunk_overlap,
           "cleaning": CLEANING_VERSION, "schema": SCHEMA_VERSION}
    key.update({name: getattr(index, name) for name in _HASHED_IF_CHANGED
                if getattr(index, name) != getattr(IndexSettings, name)})
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class IndexLocation:
    """The folder of one index and the name of its Chroma collection."""

    root: Path
    fingerprint: str
    collection: str
    chroma_url: str

    @property
    def manifest_path(self) -> Path:
        """Path of the manifest of indexed files."""
        return self.root / MANIFEST

    @property
    def chroma_path(self) -> Path:
        """Path of the persistent Chroma store (local mode)."""
        return self.root / "chroma"


def locate(settings: "Settings") -> IndexLocation:
    """The index location for these settings."""
    fp = fingerprint(settings)
    return IndexLocation(root=Path(settings.index.index_dir) / fp, fingerprint=fp,
                         collection=f"{settings.index.collection}-{fp}", chroma_url=settings.index.chroma_url)


def manifest_version(files: dict[str, Any]) -> str:
    """A short hash of which file versions an index holds: it changes whenever a file does."""
    key = json.dumps(sorted((rel, entry.get("hash", "")) for rel, entry in files.items()))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


LEASE_SECONDS = 600.0  # an indexing run renews its lease after every commit group


def read_manifest(loc: IndexLocation) -> dict[str, Any] | None:
    """The manifest, or None when the index was never built (on a Chroma server: the shared one)."""
    if loc.chroma_url:
        return server_manifest(loc).read()
    path = loc.manifest_path
    try:
        st = path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = CACHE.peek("manifest", (str(path),))
        if cached and cached[0] == stamp:
            return cached[1]
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"index manifest {loc.manifest_path} is unreadable ({exc}); "
                         f"delete {loc.root} and run `assistant index` again") from None
    data.setdefault("version", manifest_version(data.get("files", {})))
    CACHE.put("manifest", (str(path),), (stamp, data))
    return data


class ServerManifest:
    """The manifest kept on the Chroma server beside the chunks, so every client sees one index.

    A collection of small records: `file:<hash of path>` per file (its hash and chunk ids), `head`
    (fingerprint, settings and the manifest version, written last) and `lock` (the indexer's lease).
    Readers re-read the file records only when `head` names a new version."""

    PAGE = 1000

    def __init__(self, loc: IndexLocation) -> None:
        self.loc = loc
        self._cache: dict[str, Any] | None = None

    def _collection(self) -> Any:
        return open_collection(self.loc, create=True, name=f"{self.loc.collection}-manifest")

    def head(self) -> dict[str, Any] | None:
        """The head record (None before the first index run)."""
        try:
            got = self._collection().get(ids=["head"], include=["documents"])
        except StoreError:
            raise
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        return json.loads(got["documents"][0]) if got["ids"] else None

    def read(self) -> dict[str, Any] | None:
        """The whole manifest, re-read from the server only when its version changed."""
        head = self.head()
        if head is None:
            self._cache = None
            return None
        if self._cache is not None and self._cache.get("version") == head.get("version"):
            return self._cache
        collection = self._collection()
        files: dict[str, Any] = {}
        offset = 0
        try:
            while True:
                got = collection.get(where={"kind": "file"}, limit=self.PAGE, offset=offset,
                                     include=["documents", "metadatas"])
                for doc, meta in zip(got["documents"], got["metadatas"]):
                    entry = json.loads(doc)  # the whole entry (ids, and items/texts for feeds and pages)
                    files[meta["rel"]] = entry if isinstance(entry, dict) else {"hash": meta["hash"], "ids": entry}
                if len(got["ids"]) < self.PAGE:
                    break
                offset += self.PAGE
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        self._cache = {**head, "files": files}
        return self._cache

    def write(self, data: dict[str, Any]) -> None:
        """Store a new manifest: changed file records first, then the head with its new version."""
        old = (self._cache or {}).get("files", {}) if self._cache else (self.read() or {}).get("files", {})
        files = data.get("files", {})
        changed = [rel for rel, entry in files.items() if old.get(rel) != entry]
        removed = [rel for rel in old if rel not in files]
        collection = self._collection()
        version = data.get("version") or manifest_version(files)
        head = {k: v for k, v in data.items() if k != "files"} | {"version": version}
        try:
            for i in range(0, len(changed), 500):
                part = changed[i:i + 500]
                collection.upsert(ids=[_record_id(rel) for rel in part], embeddings=[[1.0]] * len(part),
                                  documents=[json.dumps(files[rel]) for rel in part],
                                  metadatas=[{"kind": "file", "rel": rel, "hash": files[rel]["hash"]} for rel in part])
            for i in range(0, len(removed), 500):
                collection.delete(ids=[_record_id(rel) for rel in removed[i:i + 500]])
            collection.upsert(ids=["head"], embeddings=[[1.0]], documents=[json.dumps(head)],
                              metadatas=[{"kind": "head"}])
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        self._cache = {**head, "files": {rel: dict(entry) for rel, entry in files.items()}}

    # -- the indexer's lease: `add` of an existing id is a no-op on Chroma, so one add wins ------
    def acquire(self, holder: str, ttl: float = LEASE_SECONDS) -> None:
        """Take the indexing lease, or raise IndexLockedError naming who holds it."""
        collection = self._collection()
        for _ in range(2):
            try:
                collection.add(ids=["lock"], embeddings=[[1.0]], documents=[holder],
                               metadatas=[{"kind": "lock", "expires": time.time() + ttl}])
                got = collection.get(ids=["lock"], include=["documents", "metadatas"])
            except Exception as exc:
                raise store_error(exc, self.loc) from None
            if got["ids"] and got["documents"][0] == holder:
                return
            if got["ids"] and float(got["metadatas"][0].get("expires", 0)) < time.time():
                # A lease left by a killed run: drop it (only if unchanged since read) and try once more.
                collection.delete(ids=["lock"], where={"expires": got["metadatas"][0]["expires"]})
                continue
            other = got["documents"][0] if got["ids"] else "another client"
            raise IndexLockedError(f"another indexing run is writing the index on {self.loc.chroma_url} "
                                   f"({other}); wait for it to finish, then run `assistant index` again")
        raise IndexLockedError(f"could not take the indexing lease on {self.loc.chroma_url}; try again")

    def lease_held(self) -> bool:
        """True while an unexpired indexing lease exists."""
        try:
            got = self._collection().get(ids=["lock"], include=["metadatas"])
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        return bool(got["ids"]) and float(got["metadatas"][0].get("expires", 0)) >= time.time()

    def renew(self, holder: str, ttl: float = LEASE_SECONDS) -> None:
        """Extend the lease while a long run is still working."""
        try:
            self._collection().update(ids=["lock"], metadatas=[{"kind": "lock", "expires": time.time() + ttl}])
        except Exception as exc:
            raise store_error(exc, self.loc) from None

    def release(self, holder: str) -> None:
        """Give the lease back (only our own)."""
        try:
            collection = self._collection()
            got = collection.get(ids=["lock"], include=["documents"])
            if got["ids"] and got["documents"][0] == holder:
                collection.delete(ids=["lock"])
        except Exception:
            pass  # an expired lease is taken over by the next run


def _record_id(rel: str) -> str:
    return "file:" + hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def server_manifest(loc: IndexLocation) -> ServerManifest:
    """The (cached) manifest on the Chroma server for this location."""
    return CACHE.get("server manifest", (loc.chroma_url, loc.collection), lambda: ServerManifest(loc))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def open_collection(loc: IndexLocation, create: bool, name: str = "") -> Any:
    """Open (or create) the Chroma collection (or another one by `name`): on disk, or on a Chroma server."""
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError:
        raise BackendUnavailableError("chromadb is not installed: pip install chromadb") from None
    key = loc.chroma_url or str(loc.chroma_path.resolve())
    try:
        handle = CACHE.peek("chroma collection", (key, name or loc.collection))
        if handle is not None:
            return handle  # the query path: no settings objects, no round trip
        client = CACHE.peek("chroma client", (key,))
        if client is None:
            chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            if loc.chroma_url:
                from urllib.parse import urlparse

                url = urlparse(loc.chroma_url)
                if not url.hostname:
                    raise ConfigError(f"ASSISTANT_CHROMA_URL={loc.chroma_url!r} is not a URL like http://127.0.0.1:8000")
                client = chromadb.HttpClient(host=url.hostname, port=url.port or 8000,
                                             ssl=url.scheme == "https", settings=chroma_settings)
            else:
                loc.chroma_path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(loc.chroma_path), settings=chroma_settings)
            CACHE.put("chroma client", (key,), client)
        if create and not name and sparse_supported(loc):
            handle = client.get_or_create_collection(loc.collection, metadata={"hnsw:space": "cosine"},
                                                     schema=sparse_schema())
        elif create:
            handle = client.get_or_create_collection(name or loc.collection, metadata={"hnsw:space": "cosine"})
        else:
            handle = client.get_collection(name or loc.collection)
        CACHE.put("chroma collection", (key, name or loc.collection), handle)
        return handle
    except ConfigError:
        raise
    except Exception as exc:
        CACHE.pop("chroma client", (key,))
        forget_handles()
        raise _store_error(exc, loc) from None


SPARSE_KEY = "bm25_sparse"


def sparse_schema() -> Any:
    """A collection schema with Chroma's own BM25 sparse index on the documents."""
    from chromadb import K, Schema, SparseVectorIndexConfig
    from chromadb.utils.embedding_functions import ChromaBm25EmbeddingFunction

    return Schema().create_index(key=SPARSE_KEY, config=SparseVectorIndexConfig(
        source_key=K.DOCUMENT, embedding_function=ChromaBm25EmbeddingFunction(), bm25=True))


def sparse_supported(loc: IndexLocation) -> bool:
    """Whether the Chroma server keeps a BM25 sparse index itself (distributed Chroma and Chroma Cloud
    do; a local store and a single-node `chroma run` refuse it). Found by trying, once per server."""
    if not loc.chroma_url:
        return False
    known = CACHE.peek("sparse", (loc.chroma_url,))
    if known is None:
        client = CACHE.peek("chroma client", (loc.chroma_url,))
        if client is None:
            open_collection(loc, create=True, name=f"{loc.collection}-manifest")
            client = CACHE.peek("chroma client", (loc.chroma_url,))
        probe = f"{loc.collection}-sparse-probe"
        try:
            client.get_or_create_collection(probe, schema=sparse_schema())
        except Exception:
            known = False  # "Sparse vector indexing is not enabled ..."
        else:
            known = True
            try:
                client.delete_collection(probe)
            except Exception:
                pass
        CACHE.put("sparse", (loc.chroma_url,), known)
    return bool(known)


def forget_handles() -> None:
    """Drop cached collection handles (after a failure, or when a collection was deleted)."""
    CACHE.clear("chroma collection")


def _store_error(exc: Exception, loc: IndexLocation) -> StoreError:
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno == 28 or "No space left" in text or "disk is full" in text:
        return StoreError(f"disk full while writing the index at {loc.root}: free some space and run "
                          "`assistant index` again; the previous index is unchanged")
    if loc.chroma_url:
        return StoreError(f"cannot use the Chroma server at {loc.chroma_url} ({type(exc).__name__}: "
                          f"{text[:200]}); start it (`chroma run`) or fix ASSISTANT_CHROMA_URL")
    return StoreError(f"the index at {loc.root} failed ({type(exc).__name__}: {text[:200]})")


def store_error(exc: Exception, loc: IndexLocation) -> StoreError:
    """Wrap a Chroma failure into a StoreError that says how to fix it (and re-open next time)."""
    forget_handles()
    return _store_error(exc, loc)
