"""What an answer needs to be checked later, and the check: do its quotes still sit where it says?

An answer carries the index fingerprint and manifest version, the hash of every cited file as
indexed, the chat model, the embedder and a hash of the prompt templates. `verify()` re-reads each
cited file as the indexer would (so offsets into extracted HTML or PDF text mean the same thing)
and reports, per quote, whether it is still at its offsets, has moved, or is gone."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import Settings, resource_dir


@functools.lru_cache(maxsize=1)
def prompts_digest() -> str:
    """sha256 over the prompt templates (names and contents), so a changed prompt is visible."""
    h = hashlib.sha256()
    for path in sorted(resource_dir("prompts").glob("*.txt")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def provenance(settings: Settings, manifest: dict[str, Any], files: list[str], model_id: str) -> dict[str, Any]:
    """The provenance record of an answer citing `files`."""
    entries = manifest.get("files", {})
    return {"index_fingerprint": manifest.get("fingerprint", ""), "manifest_version": manifest.get("version", ""),
            "corpus": manifest.get("corpus", ""), "embedder": settings.index.embedder, "model": model_id,
            "prompts_sha256": prompts_digest(),
            "files": {rel: entries.get(rel, {}).get("hash", "") for rel in dict.fromkeys(files)}}


@dataclass
class QuoteCheck:
    """One citation re-checked against the current file."""

    label: str
    file: str
    start: int
    end: int
    status: str  # "ok", "moved", "changed", "missing", "unreadable"
    detail: str = ""
    now_start: int | None = None
    now_end: int | None = None


@dataclass
class VerifyReport:
    """Every citation of an answer, re-checked; `ok` when each quote still sits at its offsets."""

    corpus: str
    checks: list[QuoteCheck] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every quote is where the answer says."""
        return bool(self.checks) and all(c.status == "ok" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` output."""
        return {"ok": self.ok, "corpus": self.corpus, "checks": [asdict(c) for c in self.checks],
                "changed_files": self.changed_files, "notes": self.notes}


def load_answer(path: str | Path) -> dict[str, Any]:
    """Read an answer saved with `assistant ask --json`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (save one with `assistant ask --json ... > answer.json`)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not an answer saved as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("citations"), list):
        raise InputError(f"{path} is not an answer from `assistant ask --json` (no citations list)")
    return data


def verify(answer: dict[str, Any], corpus: str | Path | None = None, settings: Settings | None = None) -> VerifyReport:
    """Re-check every quote of a saved answer against the files as they are now."""
    from ..indexing.build import file_digest
    from ..reading.loaders import SkipFile, load_document, read_metadata

    settings = settings or Settings.from_env()
    record = answer.get("provenance") or {}
    root = Path(corpus or record.get("corpus") or settings.index.corpus_dir)
    if not root.is_dir():
        raise InputError(f"corpus folder {root} not found: pass the folder the answer came from with --corpus")
    report = VerifyReport(corpus=str(root))
    if not answer["citations"]:
        report.notes.append("the answer has no citations to check")
    if not record:
        report.notes.append("the answer carries no provenance (made before provenance was recorded)")
    elif record.get("prompts_sha256") and record["prompts_sha256"] != prompts_digest():
        report.notes.append("the prompt templates changed since the answer was made")
    metadata = read_metadata(root)
    loaded: dict[str, Any] = {}
    for c in answer["citations"]:
        rel, start, end, quote = c["file"], int(c["start"]), int(c["end"]), c["quote"]
        check = QuoteCheck(c.get("label", ""), rel, start, end, "ok")
        path = root / rel
        if rel not in loaded:
            try:
                loaded[rel] = load_document(path, rel, settings.index.max_file_bytes, metadata.get(rel)).text
            except SkipFile as exc:
                loaded[rel] = exc if path.exists() else None
            indexed = record.get("files", {}).get(rel)
            if indexed and path.is_file() and file_digest(path, metadata.get(rel)) != indexed:
                report.changed_files.append(rel)
        text = loaded[rel]
        if text is None:
            check.status, check.detail = "missing", "the file is gone"
        elif isinstance(text, SkipFile):
            check.status, check.detail = "unreadable", str(text)
        elif text[start:end] == quote:
            pass
        elif quote and quote in text:
            at = text.index(quote)
            check.status, check.now_start, check.now_end = "moved", at, at + len(quote)
            check.detail = f"the quote is now at [{at}:{at + len(quote)}]"
        else:
            check.status = "changed"
            check.detail = f"the text at [{start}:{end}] now reads {text[start:end][:80]!r}"
        report.checks.append(check)
    return report
