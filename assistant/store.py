"""Where an index lives: its fingerprint, folder, manifest and Chroma collection."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cleaning import CLEANING_VERSION
from .errors import BackendUnavailableError, ConfigError, StoreError

if TYPE_CHECKING:
    from .settings import Settings

SCHEMA_VERSION = "1"
MANIFEST = "manifest.json"


def fingerprint(settings: "Settings") -> str:
    """Hash of everything that changes vectors: embedder, chunking, cleaning, schema."""
    key = json.dumps({"embedder": settings.embedder, "chunk_size": settings.chunk_size,
                      "chunk_overlap": settings.chunk_overlap, "cleaning": CLEANING_VERSION,
                      "schema": SCHEMA_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


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
    return IndexLocation(root=Path(settings.index_dir) / fp, fingerprint=fp,
                         collection=f"{settings.collection}-{fp}", chroma_url=settings.chroma_url)


def read_manifest(loc: IndexLocation) -> dict[str, Any] | None:
    """The manifest, or None when the index was never built."""
    try:
        return json.loads(loc.manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"index manifest {loc.manifest_path} is unreadable ({exc}); "
                         f"delete {loc.root} and run `assistant index` again") from None


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


_CLIENTS: dict[str, Any] = {}


def open_collection(loc: IndexLocation, create: bool) -> Any:
    """Open (or create) the Chroma collection: persistent on disk, or on a Chroma server."""
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError:
        raise BackendUnavailableError("chromadb is not installed: pip install chromadb") from None
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    key = loc.chroma_url or str(loc.chroma_path.resolve())
    try:
        client = _CLIENTS.get(key)
        if client is None:
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
            _CLIENTS[key] = client
        if create:
            return client.get_or_create_collection(loc.collection, metadata={"hnsw:space": "cosine"})
        return client.get_collection(loc.collection)
    except ConfigError:
        raise
    except Exception as exc:
        _CLIENTS.pop(key, None)
        raise _store_error(exc, loc) from None


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
    """Wrap a Chroma failure into a StoreError that says how to fix it."""
    return _store_error(exc, loc)
