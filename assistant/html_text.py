"""Extract article text from HTML: keep the story, drop scripts, navigation and hidden parts."""

from __future__ import annotations

import re

_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside",
              "form", "button", "svg", "iframe", "select", "head")
_BLOCK_TAGS = frozenset((
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "td", "th", "figcaption",
    "dt", "dd", "div", "section", "article", "main", "body", "ul", "ol", "dl", "table", "tr",
    "figure", "address", "details", "summary", "br", "hr"))
# Text a reader never sees: display/visibility, zero size or opacity, or moved far off-screen.
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|!|$)"
    r"|opacity\s*:\s*0(?:\.0+)?\s*(?:;|!|$)|(?:left|top|text-indent)\s*:\s*-\d{3,}", re.I)


def html_to_text(html: str) -> tuple[str, str, str]:
    """Return (text, title, date) of an HTML page; blocks are separated by blank lines.

    The date is the page's own value (normalised to ISO by the loader).
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    date = ""
    for attrs in ({"property": "article:published_time"}, {"name": "date"}, {"name": "pubdate"},
                  {"itemprop": "datePublished"}):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            date = str(tag["content"]).strip()
            break
    if not date:
        time_tag = soup.find("time", attrs={"datetime": True})
        if time_tag:
            date = str(time_tag["datetime"]).strip()
    for tag in soup.find_all(_DROP_TAGS):
        # An article's own <header> holds its headline and byline; page headers are chrome.
        if tag.name == "header" and tag.find_parent("article") is not None:
            continue
        if not getattr(tag, "decomposed", False):
            tag.decompose()
    hidden = [tag for tag in soup.find_all(True) if _is_hidden(tag.attrs or {})]
    for tag in hidden:
        if not getattr(tag, "decomposed", False):
            tag.decompose()
    body = soup.body or soup
    blocks = _blocks(body)
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    return "\n\n".join(blocks), title, date


def _is_hidden(attrs: dict) -> bool:
    return ("hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true"
            or bool(_HIDDEN_STYLE.search(str(attrs.get("style", "")))))


def _blocks(root: object) -> list[str]:
    # Walk the tree without recursion (deep pages must not overflow the stack); a block
    # element closes the running paragraph, so text written straight into a <div> is kept too.
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    blocks: list[str] = []
    parts: list[str] = []

    def flush() -> None:
        text = " ".join("".join(parts).split())
        if text:
            blocks.append(text)
        parts.clear()

    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if node is _FLUSH:
            flush()
        elif isinstance(node, Tag):
            block = node.name in _BLOCK_TAGS
            if block:
                flush()
                stack.append(_FLUSH)
            stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            parts.append(str(node))
    flush()
    return blocks


_FLUSH = object()
