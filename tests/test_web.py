"""The web page of `assistant serve` in a real browser: Debian's chromium driven by Playwright (no
browser download). Asking streams the answer in; a citation chip opens the article with the quote
highlighted at its exact offsets; a decline shows the closest passages; a follow-up sends the
conversation and shows the question it was searched as; the filters restrict the sources; `?q=` asks
on load; the timeline draws its events on a time axis; /docs renders with the network cut off."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("the web page tests drive Debian's chromium, which is not installed (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the web page tests need playwright (pip install -e '.[test]')")

from assistant.backends import get_llm  # noqa: E402
from assistant.backends.llms import Completion  # noqa: E402
from assistant.interfaces.client import ask_via_server  # noqa: E402
from assistant.interfaces.server import AssistantServer  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from served import running  # noqa: E402
from conftest import built_sample  # noqa: E402

ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
UNANSWERABLE_Q = "Who won the Olympic gold medal for Brazil?"
FOLLOW_UP = "When was that employee detained?"
REWRITTEN = "When was the Astellas Pharma employee detained in Beijing?"
TOPIC = "Hayashi Qin Gang meeting visit Beijing"
TOKEN = "web-s3cret"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return built_sample(tmp_path_factory, "web")


@pytest.fixture(scope="module")
def server(built: Settings) -> Iterator[AssistantServer]:
    yield from running(built)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _page(browser: Any, url: str) -> Iterator[Any]:
    """A page that may reach only the server: any other request is aborted and fails the test, as
    does a script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    origin = urlsplit(url).netloc

    def only_local(route: Any) -> None:
        if urlsplit(route.request.url).netloc == origin or route.request.url.startswith("data:"):
            route.continue_()
        else:
            problems.append(f"request off the server: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    yield page
    context.close()
    assert not problems


@pytest.fixture
def page(browser: Any, server: AssistantServer) -> Iterator[Any]:
    yield from _page(browser, server.url)


def _ask(page: Any, question: str, turns: int = 1) -> Any:
    """Type a question, press Ask, wait until the turn is finished; the turn's locator."""
    page.fill("#question", question)
    page.click("#ask")
    page.wait_for_function(f"document.querySelectorAll('.turn').length === {turns} && "
                           "!document.querySelector('.turn.waiting')")
    turn = page.locator(".turn").nth(turns - 1)
    assert turn.locator(".error").count() == 0, turn.inner_text()
    return turn


def _offset_of_highlight(page: Any) -> int:
    """How many characters of the article come before the highlight."""
    return page.evaluate("""() => {
        const range = document.createRange();
        range.setStart(document.getElementById('viewer-text'), 0);
        range.setEndBefore(document.getElementById('highlight'));
        return range.toString().length;
    }""")


def test_an_answer_streams_in_then_shows_its_citations_as_chips(page: Any, server: AssistantServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    llm = server.assistant.llm
    real = llm.stream

    def slow(*args: Any, **kwargs: Any) -> Iterator[str]:
        for piece in real(*args, **kwargs):
            time.sleep(0.03)
            yield piece

    monkeypatch.setattr(llm, "stream", slow)
    page.goto(server.url)
    page.fill("#question", ASTELLAS_Q)
    page.click("#ask")
    # Part of the answer is on the page while the turn is still being answered...
    page.wait_for_function("(() => { const a = document.querySelector('.turn.waiting .answer');"
                           " return a && a.textContent.length > 0 && !document.querySelector('.turn .citations'); })()")
    partial = page.locator(".turn .answer").inner_text()
    page.wait_for_selector(".turn:not(.waiting) .citations")
    answer = page.locator(".turn .answer")
    assert "Astellas" in answer.inner_text() and len(answer.inner_text()) > len(partial)
    assert int(answer.get_attribute("data-deltas") or 0) > 3  # it came in pieces
    reference = ask_via_server(server.url, ASTELLAS_Q)
    chips = answer.locator("button.chip")
    assert chips.count() >= 1
    labels = {c.label for c in reference.citations}
    assert {chips.nth(i).inner_text() for i in range(chips.count())} <= labels
    listed = page.locator(".turn ul.citations li")
    assert listed.count() == len(reference.citations)


def test_a_chip_opens_the_article_with_the_quote_highlighted_at_its_offsets(page: Any,
                                                                            server: AssistantServer) -> None:
    reference = {c.label: c for c in reversed(ask_via_server(server.url, ASTELLAS_Q).citations)}
    page.goto(server.url)
    turn = _ask(page, ASTELLAS_Q)
    chip = turn.locator(".answer button.chip").first
    citation = reference[chip.inner_text()]
    chip.click()
    mark = page.locator("#viewer-text mark#highlight")
    mark.wait_for()
    assert mark.text_content() == citation.quote and citation.quote
    assert _offset_of_highlight(page) == citation.start
    assert citation.file in page.locator("#viewer-meta").inner_text()
    viewer, shown = page.locator("#viewer-text").bounding_box(), mark.bounding_box()
    assert viewer and shown and viewer["y"] <= shown["y"] < viewer["y"] + viewer["height"]  # scrolled to it
    corpus = Path(server.settings.index.corpus_dir)
    assert (corpus / citation.file).read_text(encoding="utf-8")[citation.start:citation.end] == citation.quote


def test_a_declined_question_shows_the_closest_passages(page: Any, server: AssistantServer) -> None:
    reference = ask_via_server(server.url, UNANSWERABLE_Q)
    assert reference.declined and reference.sources
    page.goto(server.url)
    turn = _ask(page, UNANSWERABLE_Q)
    assert turn.get_attribute("data-declined") == "true"
    assert turn.locator(".answer").inner_text().startswith("The articles don't say.")
    passages = turn.locator("ul.passages li")
    assert passages.count() == len(reference.sources)
    first = reference.sources[0]
    assert f"{first.file} [{first.start}:{first.end}]" in passages.first.inner_text()
    passages.first.click()
    page.locator("#highlight").wait_for()
    assert page.locator("#highlight").text_content() == first.text
    assert _offset_of_highlight(page) == first.start


def test_a_follow_up_sends_the_conversation_and_shows_the_question_searched(
        page: Any, server: AssistantServer, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = get_llm(server.settings)
    real = llm.complete

    def rewriting(messages: list[dict[str, str]], **kwargs: Any) -> Any:
        if messages[-1]["content"].startswith("Rewrite"):
            llm.requests.append(messages)
            return Completion(text=REWRITTEN, prompt_tokens=1, completion_tokens=1)
        return real(messages, **kwargs)

    monkeypatch.setattr(llm, "complete", rewriting)
    llm.requests.clear()
    page.goto(server.url)
    first = _ask(page, ASTELLAS_Q)
    assert first.locator(".standalone").is_hidden()  # a first question is searched as asked
    second = _ask(page, FOLLOW_UP, turns=2)
    rewrites = [m[-1]["content"] for m in llm.requests if m[-1]["content"].startswith("Rewrite")]
    assert len(rewrites) == 1 and ASTELLAS_Q in rewrites[0] and FOLLOW_UP in rewrites[0]
    assert "Astellas Pharma" in rewrites[0]  # the first answer went back as history
    assert second.locator(".standalone").inner_text() == f"searched as: {REWRITTEN}"
    page.click("#new-conversation")
    _ask(page, FOLLOW_UP)
    assert len([m for m in llm.requests if m[-1]["content"].startswith("Rewrite")]) == 1  # no history now


def test_the_file_filter_restricts_what_is_cited(page: Any, server: AssistantServer) -> None:
    page.goto(server.url)
    page.click("#filters summary")
    only = "004_749f0bb3dcd254b9.txt"
    page.wait_for_selector(f"#files option[value='{only}']", state="attached")
    assert page.locator("#files option").count() == 5
    page.select_option("#files", only)
    assert only in page.locator("#filter-summary").inner_text()
    turn = _ask(page, ASTELLAS_Q)
    shown = [turn.locator("[data-file]").nth(i).get_attribute("data-file")
             for i in range(turn.locator("[data-file]").count())]
    passages = turn.locator("ul.passages li .file").all_inner_texts()
    assert shown or passages
    assert set(shown) <= {only} and all(p.startswith(only) for p in passages)


def test_a_link_with_q_asks_on_load(page: Any, server: AssistantServer) -> None:
    page.goto(f"{server.url}/?q={quote(ASTELLAS_Q)}")
    page.wait_for_selector(".turn:not(.waiting) .citations")
    assert page.locator(".turn .question").inner_text() == ASTELLAS_Q
    assert "Astellas" in page.locator(".turn .answer").inner_text()


def test_the_timeline_draws_happened_and_planned_events_that_open_their_quotes(page: Any,
                                                                              server: AssistantServer) -> None:
    with urllib.request.urlopen(f"{server.url}/v1/timeline?topic={quote(TOPIC)}", timeout=120) as reply:
        events = json.loads(reply.read())["events"]
    assert {e["status"] for e in events} == {"happened", "planned"}
    page.goto(server.url)
    page.fill("#topic", TOPIC)
    page.click("#draw-timeline")
    page.wait_for_selector("#timeline svg g.event", timeout=120_000)
    drawn = page.locator("#timeline svg g.event")
    assert drawn.count() == len(events)
    happened, planned = page.locator("g.event.happened"), page.locator("g.event.planned")
    assert happened.count() == sum(e["status"] == "happened" for e in events) > 0
    assert planned.count() == sum(e["status"] == "planned" for e in events) > 0
    assert happened.locator("circle").count() == happened.count() and planned.locator("rect").count() == planned.count()
    # On a time axis: later events sit further right.
    xs = page.evaluate("""() => [...document.querySelectorAll('#timeline g.event')].map(g =>
        [Number(g.dataset.index), g.querySelector('circle, rect').getBBox().x + 5])""")
    by_index = [x for _, x in sorted(xs)]
    assert by_index == sorted(by_index) and by_index[0] < by_index[-1]
    # Planned events are drawn apart from those that happened: below the axis, not above.
    y_of = "g => { const t = g.querySelector('text.label'); return Number(t.getAttribute('y')); }"
    axis_y = float(page.locator("#timeline line.axis").first.get_attribute("y1") or 0)
    assert all(y < axis_y for y in happened.evaluate_all(f"gs => gs.map({y_of})"))
    assert all(y > axis_y for y in planned.evaluate_all(f"gs => gs.map({y_of})"))
    target = planned.first
    citation = events[int(target.get_attribute("data-index") or -1)]["citations"][0]
    target.locator("rect").click()  # its marker on the axis
    page.locator("#highlight").wait_for()
    assert page.locator("#highlight").text_content() == citation["quote"]
    assert _offset_of_highlight(page) == citation["start"]


def test_the_api_docs_render_without_the_internet(page: Any, server: AssistantServer) -> None:
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    text = page.locator(".swagger-ui").inner_text()
    for path in ("/v1/ask", "/v1/chat/completions", "/v1/ask/stream", "/v1/files/{name}", "/v1/timeline"):
        assert path in text


def test_with_a_token_the_page_asks_for_it_and_then_answers(browser: Any, built: Settings) -> None:
    for server in running(built, TOKEN):
        for page in _page(browser, server.url):
            page.goto(f"{server.url}/?q={quote(ASTELLAS_Q)}")
            page.wait_for_selector(".turn .error")
            assert "bearer token" in page.locator(".turn .error").inner_text()
            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            turn = _ask(page, ASTELLAS_Q, turns=2)
            assert "Astellas" in turn.locator(".answer").inner_text()
