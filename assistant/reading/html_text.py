"""Extract article text from HTML: keep the story, drop scripts, navigation and hidden parts.

`article_text` is the main path (trafilatura finds the story, htmldate its date); `html_to_text`
is the plain BeautifulSoup walk, used when trafilatura finds nothing and for feed item HTML."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

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
    import warnings

    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

    # A page that is only a web address is text to us (never fetched), not a mistake to warn about.
    warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)
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


# Dates exactly as the indexer asks htmldate for them: the original publication date, from the
# page's markup only (no search through the text, no network).
DATE_PARAMS: dict[str, Any] = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%d"}
_LXML_DROP = frozenset(_DROP_TAGS) - {"head"}  # <head> holds the title and dates


def article_text(html: str) -> tuple[str, str, str]:
    """Return (text, title, date) of a saved news page: the story without boilerplate or comments.

    Paragraphs are separated by blank lines; the text is the same for the same HTML. Falls back
    to `html_to_text` when trafilatura finds no article; text is "" when neither finds any.
    """
    for name in ("trafilatura", "htmldate"):  # they log on odd pages; the skip reason says enough
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
    text, title, date = "", "", ""
    try:
        from trafilatura import bare_extraction
        from trafilatura.metadata import extract_metadata
        from trafilatura.utils import load_html

        tree = load_html(html)  # parsed here: given a bare URL string, htmldate would fetch it
        if tree is not None:
            meta = extract_metadata(copy.deepcopy(tree), date_config=dict(DATE_PARAMS))
            title, date = meta.title or "", meta.date or ""
            date = date or _own_date(tree)
            _drop_hidden(tree)
            found = bare_extraction(tree, include_comments=False, include_images=False, deduplicate=False)
            lines = (getattr(found, "text", "") or "").splitlines()
            text = "\n\n".join(" ".join(line.split()) for line in lines if line.strip())
    except Exception:  # lxml and trafilatura raise many types (even RecursionError) on broken pages
        text = ""
    if not text:
        text, own_title, own_date = html_to_text(html)
        title, date = title or own_title, date or own_date
    return text, title, date


def _own_date(tree: Any) -> str:
    # The page's own publication markup, for dates htmldate does not take (e.g. "Dec 25, 2024").
    for xpath in ('//meta[@property="article:published_time"]/@content', '//meta[@name="date"]/@content',
                  '//meta[@name="pubdate"]/@content', '//meta[@itemprop="datePublished"]/@content',
                  "//time[@datetime]/@datetime"):
        found = [str(v).strip() for v in tree.xpath(xpath) if str(v).strip()]
        if found:
            return found[0]
    return ""


def _drop_hidden(tree: Any) -> None:
    # Text a reader never sees must not reach the index (hidden prompt injections): trafilatura
    # knows no CSS, so hidden elements, scripts and page chrome go before it reads the page.
    doomed = []
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        tag = el.tag.lower()
        if tag == "header" and any(a.tag == "article" for a in el.iterancestors()):
            continue  # an article's own header holds its headline
        if tag in _LXML_DROP or _is_hidden(dict(el.attrib)):
            doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()
