"""Recognise article sentences that address the assistant instead of reporting news (prompt injection)."""

from __future__ import annotations

import re

_PATTERNS = (
    # "ignore / disregard ... previous instructions", in English and a few other languages
    r"\b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,60}\b(instructions?|prompts?|rules|guidelines)\b",
    r"\b(previous|prior|above|earlier|hidden|developer|system)\s+(instructions?|prompts?)\b|\bsystem message\b",
    r"\b(ignorez|oubliez)\b[^.!?\n]{0,60}\b(instructions|règles|consignes)\b|\brépondez (uniquement|seulement)\b",
    r"\b(ignora|olvida)\b[^.!?\n]{0,60}\b(instrucciones|reglas)\b|\bignorier\w*\b[^.!?\n]{0,60}\b(anweisungen|regeln)\b",
    r"指示[^。]{0,20}無視|無視して|とだけ答え|と答えてください|忽略[^。]{0,20}(指令|指示)|只回答",
    # chat-template tokens and role markers
    r"<\|[^|<>\n]{0,40}\|>|\[/?INST\]|<</?SYS>>|^\s*(system|assistant|developer)\s*:",
    # addressing the model: persona, answer format, secrets
    r"^you (are|must|should|will)\b|\byou are (now|no longer)\b|\bfrom now on,? you\b|\bpretend (to be|you are)\b",
    r"\b(answer|reply|respond|say|output)\s+(only|just|exactly)\b|\b(only|always)\s+(answer|reply|respond)\b",
    r"\b(for|to) (every|each|any|all) questions?\b|\b(begin|start|end|sign) (every|each|your) (answer|reply|response)",
    r"\b(reveal|print|show|output|repeat|leak|disclose)\b[^.!?\n]{0,40}\b(system prompt|instructions|api[ _-]?keys?|"
    r"passwords?|secrets?)\b|\b[A-Z]+_API_KEY\b",
    # our own protocol has no business inside an article: labels, the decline wording, markdown links
    r"\[S\d+\]|NOT_IN_SOURCES|\barticles don'?t say\b|!?\[[^\]\n]{0,80}\]\(\s*https?://",
)
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.I | re.M)


def addresses_the_assistant(sentence: str) -> bool:
    """True for text written to steer an AI (instructions, role markers, forged labels), not to inform."""
    return bool(_INJECTION.search(sentence))
