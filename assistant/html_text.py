"""Extract article text from HTML: keep the story, drop scripts, navigation and hidden parts."""

from __future__ import annotations

import re

_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside",
              "form", "button", "svg", "iframe", "select", "head")
_BLOCK_TAGS = ("p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "td", "th",
               "figcaption", "dt", "dd")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)


def html_to_text(html: str) -> tuple[str, str, str]:
    """Return (text, title, date) of an HTML page; blocks are separated by blank lines."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    date = ""
    for attrs in ({"property": "article:published_time"}, {"name": "date"}, {"name": "pubdate"},
                  {"itemprop": "datePublished"}):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            date = str(tag["content"])[:10]
            break
    if not date:
        time_tag = soup.find("time", attrs={"datetime": True})
        if time_tag:
            date = str(time_tag["datetime"])[:10]
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    hidden = [tag for tag in soup.find_all(True) if _is_hidden(tag.attrs or {})]
    for tag in hidden:
        if not getattr(tag, "decomposed", False):
            tag.decompose()
    blocks: list[str] = []
    body = soup.body or soup
    for tag in body.find_all(_BLOCK_TAGS):
        # Nested blocks (a <p> inside an <li>) are emitted once, by the innermost block.
        if tag.find(_BLOCK_TAGS):
            continue
        text = " ".join(tag.get_text(" ", strip=True).split())
        if text:
            blocks.append(text)
    if not blocks:
        text = " ".join(body.get_text(" ", strip=True).split())
        blocks = [text] if text else []
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    return "\n\n".join(blocks), title, date


def _is_hidden(attrs: dict) -> bool:
    return ("hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true"
            or bool(_HIDDEN_STYLE.search(str(attrs.get("style", "")))))
