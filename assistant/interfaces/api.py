"""The FastAPI app of `assistant serve`: errors as OpenAI-shaped JSON, the bearer token, the body
limit, and the API routes (`/healthz`, `/v1/models`, `/v1/ask`, `/v1/chat/completions`); the web
page, its endpoints and `/docs` are added by `webapp.py`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import sys
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Optional

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import AssistantError
from . import protocol
from .protocol import (AskRequest, ChatRequest, Reject, chat_turns, chunk, completion, deltas, error_body, extras,
                       sources_block, validation_message)

if TYPE_CHECKING:
    from .server import AssistantServer


def error_response(exc: BaseException) -> JSONResponse:
    """The JSON error for an exception, with its headers (Retry-After, WWW-Authenticate)."""
    status, body = error_body(exc)
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status, headers=headers)


class BodyLimit:
    """Refuse a body over `protocol.MAX_BODY` bytes (413, read first so the client hears it rather than a
    reset) and a chunked body (411: the limit needs a Content-Length)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = protocol.MAX_BODY
        refusal: Reject | None = None
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            refusal = Reject(411, "send the body with a Content-Length")
        elif int(headers.get(b"content-length", b"0") or 0) > limit:
            if int(headers[b"content-length"]) <= 8 * limit:
                while (await receive()).get("more_body"):
                    pass
            refusal = Reject(413, f"request body over {limit} bytes")
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await error_response(refusal)(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="Required when the server was started with a token "
                                                   "(--token or ASSISTANT_SERVER_TOKEN).")


def authorize(request: Request, given: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
    """Check the bearer token, when the server has one."""
    token = request.app.state.server.token
    if token and (given is None or not hmac.compare_digest(given.credentials.strip().encode(), token.encode())):
        raise Reject(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                     "authentication_error")


def check_length(server: "AssistantServer", question: str) -> None:
    """413 for a question over `server_question_max_chars`, before it reaches the queue."""
    limit = server.settings.server.question_max_chars
    if len(question) > limit:
        raise Reject(413, f"the question is {len(question):,} characters long; at most {limit:,} are "
                          "accepted (ASSISTANT_SERVER_QUESTION_MAX_CHARS): ask about one thing at a time")


def log_failure(exc: BaseException) -> None:
    """Print an unexpected failure's traceback to the server's log (the client gets only a message)."""
    if not isinstance(exc, (Reject, AssistantError)):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


async def waiting(future: "concurrent.futures.Future[Any]", beat: str) -> AsyncIterator[str]:
    """Yield `beat` every KEEPALIVE_S until the future is done (a client that leaves stops only the
    waiting: the answer is made all the same, and frees its queue place when it is)."""
    done = asyncio.wrap_future(future)
    done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even if nobody waits
    while not (await asyncio.wait({done}, timeout=protocol.KEEPALIVE_S))[0]:
        yield beat


def create_app(server: "AssistantServer", extend: Callable[..., None] | None = None) -> FastAPI:
    """The app serving `server`."""
    # strict_content_type off: a body without a Content-Type is read as JSON, as before FastAPI.
    app = FastAPI(title="assistant", version="0.1.0", docs_url=None, redoc_url=None, strict_content_type=False,
                  description="Answers questions about a folder of news articles, citing the file and passage "
                              "behind every claim. Every endpoint but /healthz, the page and these docs needs "
                              "`Authorization: Bearer <token>` when the server has a token.")
    app.state.server = server
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(Reject(400, validation_message(list(exc.errors()))))

    @app.exception_handler(HTTPException)
    async def routing(request: Request, exc: HTTPException) -> JSONResponse:
        path, method = request.url.path, request.method
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no endpoint {method} {path}; see {', '.join(protocol.ENDPOINTS)} (and /docs)"
        elif exc.status_code == 405:
            message = f"{path} does not accept {method}"
        else:
            message = str(exc.detail)
        return error_response(Reject(exc.status_code, message, headers=exc.headers))

    @app.exception_handler(Reject)
    @app.exception_handler(AssistantError)
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # The one boundary: the client is told only the message; uvicorn logs the traceback.
        return error_response(exc)

    @app.get("/healthz", tags=["server"], summary="The model, the index and the queue (never waits for the model)")
    async def healthz() -> dict[str, Any]:
        return server.health()

    api = APIRouter(dependencies=[Depends(authorize)])

    @api.get("/v1/models", tags=["OpenAI"], summary="The one model this server answers with")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": server.model, "object": "model", "created": server.started,
                                            "owned_by": "assistant"}]}

    @api.post("/v1/ask", tags=["assistant"], summary="Answer a question with citations (the Answer as JSON)")
    async def ask(body: AskRequest) -> JSONResponse:
        check_length(server, body.question)
        filters = body.filters()
        answer = await asyncio.wrap_future(server.submit(server.answer, body.question, filters=filters,
                                                         history=body.turns()))
        return JSONResponse(answer.to_dict())

    @api.post("/v1/chat/completions", tags=["OpenAI"], response_model=None,
              summary="OpenAI-compatible chat: the checked answer, citations in extra fields and a Sources block")
    async def chat(body: ChatRequest) -> JSONResponse | StreamingResponse:
        question, history = chat_turns(body.messages)
        block = server.settings.server.sources_block if body.sources_block is None else body.sources_block
        check_length(server, question)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": server.model}
        future = server.submit(server.answer, question, history=history)
        if not body.stream:
            return JSONResponse(completion(base, await asyncio.wrap_future(future), block))
        return StreamingResponse(chat_events(base, future, block), media_type="text/event-stream; charset=utf-8",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(api)
    if extend is not None:  # the web page's routes (webapp.add_web), behind the same token
        extend(app, server, api_dependencies=[Depends(authorize)])
    return app


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


async def chat_events(base: dict[str, Any], future: "concurrent.futures.Future[Any]",
                      block: bool) -> AsyncIterator[str]:
    """SSE: the role at once, keep-alive comments while the answer is made, then the checked text in
    word groups, the sources block, a last chunk with the citations and checks, and [DONE]."""
    yield _sse(chunk(base, {"role": "assistant", "content": ""}))
    async for beat in waiting(future, ": keep-alive\n\n"):
        yield beat
    try:
        answer = future.result()
    except Exception as exc:
        log_failure(exc)
        yield _sse(error_body(exc)[1])
    else:
        for piece in deltas(answer.answer):
            yield _sse(chunk(base, {"content": piece}))
        sources = sources_block(answer) if block else ""
        if sources:
            yield _sse(chunk(base, {"content": sources}))
        yield _sse(chunk(base, {}, "stop", **extras(answer)))
    yield "data: [DONE]\n\n"
