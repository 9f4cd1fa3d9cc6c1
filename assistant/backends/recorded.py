"""Record a chat model's replies to a file, and replay them: a refactor's identity check in seconds.

`RecordingChatModel(model, path)` passes every call through and appends the request and the reply
to a JSON-lines file. `ReplayChatModel(path)` answers the same requests from that file and fails
loudly on any request it has not seen, so a replayed eval proves that every prompt the code sends
is byte-identical to the recorded run's (a greedy model would then answer identically).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import InputError


class ReplayMiss(RuntimeError):
    """A request the recording never saw: the prompt changed. Not an `AssistantError`, so an eval
    records it against the one case and goes on."""
from ..types import Choice, Completion


def request_key(kind: str, messages: list[dict[str, str]], **params: Any) -> str:
    """A digest of everything that decides a reply."""
    blob = json.dumps({"kind": kind, "messages": messages, **params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class RecordingChatModel:
    """Wraps a chat model; writes each request's key and reply as one JSON line."""

    def __init__(self, inner: Any, path: str | Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.path, "a", encoding="utf-8")

    def _write(self, key: str, kind: str, reply: dict[str, Any]) -> None:
        self._out.write(json.dumps({"key": key, "kind": kind, **reply}, ensure_ascii=False) + "\n")
        self._out.flush()

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        out = self.inner.complete(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        key = request_key("complete", messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        self._write(key, "complete", {"text": out.text, "prompt_tokens": out.prompt_tokens,
                                      "completion_tokens": out.completion_tokens})
        return out

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        deltas: list[str] = []
        key = request_key("stream", messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        try:
            for delta in self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop):
                deltas.append(delta)
                yield delta
        except GeneratorExit:  # a caller that stops reading early gets the same deltas on replay
            self._write(key, "stream", {"deltas": deltas})
            raise
        self._write(key, "stream", {"deltas": deltas})  # a model error records nothing

    def choose(self, messages: list[dict[str, str]], options: Sequence[str]) -> Choice:
        out = self.inner.choose(messages, options)
        key = request_key("choose", messages, options=list(options))
        self._write(key, "choose", {"option": out.option, "probs": out.probs, "calibrated": out.calibrated})
        return out

    def __getattr__(self, name: str) -> Any:  # usage counters and the like pass through
        return getattr(self.inner, name)


class ReplayChatModel:
    """Answers from a recording; a request that was not recorded raises `ReplayMiss`, or, with a
    `fallback` (a function that builds the real model, called once on the first miss), goes to that
    model, so a behaviour change is measured at the cost of only the requests it changed."""

    def __init__(self, path: str | Path, model_id: str = "replay", fallback: Callable[[], Any] | None = None) -> None:
        self.model_id = model_id
        self.replies: dict[str, dict[str, Any]] = {}
        self.misses: list[str] = []
        self._fallback = fallback
        self._model: Any = None
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self.replies[row["key"]] = row
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path} is not a recording written by --record ({exc})") from None

    def _miss(self, key: str) -> Any:
        """The real model for a request the recording lacks (None without a fallback)."""
        self.misses.append(key)
        if self._fallback is None:
            return None
        if self._model is None:
            self._model = self._fallback()
        return self._model

    def _reply(self, key: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        if key not in self.replies:
            raise ReplayMiss("replay: this request was never recorded, so the prompt changed: "
                             f"{messages[-1]['content'][-300:]!r}")
        return self.replies[key]

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        key = request_key("complete", messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        if key not in self.replies and (model := self._miss(key)) is not None:
            return model.complete(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        row = self._reply(key, messages)
        return Completion(text=row["text"], prompt_tokens=row["prompt_tokens"],
                          completion_tokens=row["completion_tokens"])

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        key = request_key("stream", messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        if key not in self.replies and (model := self._miss(key)) is not None:
            yield from model.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
            return
        yield from self._reply(key, messages)["deltas"]

    def choose(self, messages: list[dict[str, str]], options: Sequence[str]) -> Choice:
        key = request_key("choose", messages, options=list(options))
        if key not in self.replies and (model := self._miss(key)) is not None:
            return model.choose(messages, options)
        row = self._reply(key, messages)
        return Choice(option=row["option"], probs=row["probs"], calibrated=row["calibrated"])


def model_for_eval(settings: Any, record: str | Path | None = None, replay: str | Path | None = None,
                   fallback: bool = False) -> Any:
    """The chat model an eval uses: replayed from a recording, recorded, or (neither) None, which
    leaves the Assistant to build the configured one. Both: the replay (with the model for what it
    lacks) is recorded, so the new file holds every reply the run used."""
    from . import get_llm

    if replay:
        replayed = ReplayChatModel(replay, fallback=(lambda: get_llm(settings)) if fallback else None)
        return RecordingChatModel(replayed, record) if record else replayed
    if record:
        return RecordingChatModel(get_llm(settings), record)
    return None
