"""The web page of `assistant serve` and what it reads: `/` (plain HTML, CSS and JS shipped in `web/`),
`/v1/ask/stream` (the answer as JSON lines while it is made), `/v1/files/{name}` (an article's text as
the indexer read it, for the citation offsets), `/v1/search`, `/v1/timeline`, and `/docs` (Swagger UI
from the `swagger-ui-bundle-v2` package, so it works offline)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

from fastapi import APIRouter, FastAPI, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ..errors import InputError
from ..search.retrieval import Filters
from . import protocol
from .api import check_length, log_failure
from .protocol import AskRequest, Reject, error_body

if TYPE_CHECKING:
    from .server import AssistantServer

WEB = Path(__file__).resolve().parent / "web"


def corpus_root(server: "AssistantServer") -> Path:
    """The folder the index was built from (as its manifest records it), else the settings' corpus."""
    from ..indexing.store import read_manifest

    manifest = read_manifest(server.assistant.retriever.loc) or {}
    return Path(manifest.get("corpus") or server.settings.index.corpus_dir)


def indexed_files(server: "AssistantServer") -> list[dict[str, str]]:
    """The indexed files, with the date and title metadata.json gives them."""
    from ..indexing.store import read_manifest
    from ..reading.loaders import read_metadata

    manifest = read_manifest(server.assistant.retriever.loc) or {}
    metadata = read_metadata(corpus_root(server))
    return [{"file": name, "date": str(metadata.get(name, {}).get("date", "")),
             "title": str(metadata.get(name, {}).get("title", ""))} for name in sorted(manifest.get("files", {}))]


def article(server: "AssistantServer", name: str) -> dict[str, Any]:
    """An article's text as the indexer read it (what citation offsets point into): as `verify()`
    re-reads it, with `load_document`. Only indexed files inside the corpus folder are read."""
    from ..indexing.store import read_manifest
    from ..reading.loaders import SkipFile, load_document, read_metadata

    root = corpus_root(server).resolve()
    path = (root / name).resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or not path.is_relative_to(root) \
            or path == root:
        raise Reject(403, f"{name!r} is not a file in the corpus folder")
    if name not in (read_manifest(server.assistant.retriever.loc) or {}).get("files", {}):
        raise Reject(404, f"{name}: not a file of the index (see GET /v1/files)")
    metadata = read_metadata(root)
    try:
        doc = load_document(path, name, server.settings.index.max_file_bytes, metadata.get(name))
    except SkipFile as exc:
        raise Reject(404 if not path.exists() else 422, f"{name}: {exc}") from None
    except FileNotFoundError:
        raise Reject(404, f"{name}: no such file in the corpus folder") from None
    return {"file": name, "text": doc.text, "title": doc.title, "date": doc.date}


def add_web(app: FastAPI, server: "AssistantServer", api_dependencies: list[Any]) -> None:
    """Add the page, its endpoints and the offline /docs to the app."""
    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/docs/assets", StaticFiles(directory=swagger), name="swagger")
    app.mount("/web", StaticFiles(directory=WEB), name="web")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger is None:  # the package is missing: a link to the schema still helps
            return HTMLResponse('<p>Swagger UI is not installed (pip install swagger-ui-bundle-v2); the schema is '
                                'at <a href="/openapi.json">/openapi.json</a>.</p>')
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="assistant API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    api = APIRouter(dependencies=api_dependencies)

    @api.post("/v1/ask/stream", tags=["assistant"], response_class=StreamingResponse,
              summary="Answer as JSON lines: the stand-alone question, the draft as it is made, then the Answer")
    async def ask_stream(body: AskRequest) -> StreamingResponse:
        check_length(server, body.question)
        filters = body.filters()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        gone = threading.Event()

        def work() -> None:
            try:
                for event in server.stream(body.question, filters=filters, history=body.turns(), gone=gone):
                    loop.call_soon_threadsafe(events.put_nowait, event)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, ("end", None))

        future = server.submit(work)
        return StreamingResponse(_lines(future, events, gone), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/v1/files", tags=["assistant"], summary="The indexed files, with their dates and titles when known")
    def file_list() -> JSONResponse:
        return JSONResponse({"files": indexed_files(server)})

    @api.get("/v1/files/{name:path}", tags=["assistant"],
             summary="An article's text as the indexer read it: citation offsets index into `text`")
    def files(name: str) -> JSONResponse:
        return JSONResponse(article(server, name))

    @api.get("/v1/search", tags=["assistant"], summary="The top passages for a query (retrieval only, no model)")
    async def search(q: str = Query(min_length=1), k: int = Query(5, ge=1, le=50),
                     file: Optional[list[str]] = Query(None), since: str = "", until: str = "") -> JSONResponse:
        filters = Filters(files=tuple(file or ()), date_from=since, date_to=until)
        passages = await asyncio.wrap_future(server.submit(server.search, q, k, filters))
        return JSONResponse({"query": q, "passages": [p.to_dict() for p in passages]})

    @api.get("/v1/timeline", tags=["assistant"],
             summary="Dated events about a topic, in date order, planned apart from happened, each cited")
    async def timeline(topic: str = Query(min_length=1), since: str = "", until: str = "") -> JSONResponse:
        check_length(server, topic)
        if not topic.strip():
            raise InputError("the topic is empty: name a story, e.g. \"seafood import ban\"")
        result = await asyncio.wrap_future(server.submit(server.timeline, topic, since, until))
        return JSONResponse(result.to_dict())

    app.include_router(api)


def _line(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False) + "\n"


async def _lines(future: Any, events: "asyncio.Queue[tuple[str, Any]]", gone: threading.Event) -> AsyncIterator[str]:
    """The events as JSON lines, {"type": "wait"} while queued or thinking, an error as {"type":
    "error", "error": {...}}; a client that leaves before the model is free is dropped from the queue."""
    try:
        yield _line({"type": "wait"})
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), timeout=protocol.KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield _line({"type": "wait"})
                continue
            if kind == "end":
                break
            yield _line({"type": "answer", "answer": value.to_dict()} if kind == "answer" else
                        {"type": kind, "text": value})
        try:
            await asyncio.wrap_future(future)
        except Exception as exc:
            log_failure(exc)
            yield _line({"type": "error", **error_body(exc)[1]})
    finally:
        gone.set()


def _swagger_assets() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)
