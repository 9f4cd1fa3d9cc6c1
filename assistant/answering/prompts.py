"""Prompt templates: text files in prompts/ whose declared variables are checked on load."""

from __future__ import annotations

import functools
import re
import string

from ..errors import ConfigError
from ..settings import resource_dir

_DECLARED = re.compile(r"^#.*Variables:\s*(.*)$", re.I | re.M)


@functools.lru_cache(maxsize=None)
def load_prompt(name: str) -> tuple[str, frozenset[str]]:
    """Return (template without comment lines, declared variable names)."""
    path = resource_dir("prompts") / f"{name}.txt"
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(f"prompt file {path} is missing; reinstall the assistant") from None
    match = _DECLARED.search(raw)
    declared = frozenset(v.strip() for v in match.group(1).split(",")
                         if v.strip() and not v.strip().startswith("(")) if match else frozenset()
    template = "\n".join(line for line in raw.splitlines() if not line.startswith("#")).strip("\n")
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    if used != declared:
        raise ConfigError(f"prompt {path} uses {sorted(used)} but declares {sorted(declared)}")
    return template, declared


def render(name: str, **values: str) -> str:
    """Fill a prompt; every declared variable must be given, and nothing else."""
    template, declared = load_prompt(name)
    if set(values) != declared:
        raise ConfigError(f"prompt '{name}' needs {sorted(declared)}, got {sorted(values)}")
    return template.format_map(values)
