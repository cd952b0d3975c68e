"""The interface's HTTP side: a Starlette app over one :class:`~.session.Session`. The page and its
script are static package data; every ``/api`` route is a small translation of a request into one
session call, answered with JSON (or a PNG). Work runs in Starlette's thread pool, never on the
event loop. A bad input is ``{"error": "one line"}`` with status 400 and the server keeps serving.

Security: requests whose Host header is not the served address are refused (DNS rebinding), as are
state-changing requests whose Origin is not the page's own; Load reads at most
``ui.max_upload_mb`` and parses JSON or safetensors only; nothing is written outside the run
directory."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import RewriteError
from .session import Session

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def static_dir() -> Path:
    return Path(str(resources.files("lightning_rewrite.app.ui") / "static"))


class HostAndOrigin:
    """ASGI middleware: a request must name an allowed Host; a request that may change state
    (anything but GET and HEAD) must come from an allowed Origin."""

    def __init__(self, app: ASGIApp, hosts: set[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if host not in self.hosts:
            problem = f"Host {host!r} is not this server's address; open {sorted(self.hosts)[0]}"
        elif scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is None or origin.removeprefix("http://") not in self.hosts:
                problem = f"requests that change the edit must come from this server's page, not origin {origin!r}"
        if problem is not None:
            await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers a browser sends for this server (a loopback server answers to every loopback name)."""
    names = set(LOOPBACK) if host in LOOPBACK else {host}
    return {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}


Handler = Callable[[Request], Awaitable[Response]]


def _answer(work: Callable[[], Any]) -> Response:
    try:
        result = work()
    except RewriteError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    if isinstance(result, Response):
        return result
    return JSONResponse(result if result is not None else {"ok": True})


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        raise RewriteError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise RewriteError("the request body must be a JSON object")
    return body


def _int(body: dict[str, Any] | Any, key: str) -> int:
    value = body.get(key) if isinstance(body, dict) else body
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RewriteError(f"{key} must be a whole number, got {value!r}")
    return value


def make_app(session: Session, host: str, port: int, max_upload_mb: int) -> Starlette:
    """The ASGI app serving ``session`` at ``host:port``."""
    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def index(request: Request) -> Response:
        return FileResponse(static_dir() / "index.html")

    async def state(request: Request) -> Response:
        return await run_in_threadpool(_answer, session.state)

    async def image(request: Request) -> Response:
        original = request.query_params.get("original") == "1"
        matches = request.query_params.get("matches") == "1"

        def work() -> Response:
            index = _int(request.path_params, "index")
            return png(session.matches(index, original) if matches else session.image(index, original))
        return await run_in_threadpool(_answer, work)

    def posted(work: Callable[[dict[str, Any]], Any]) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                body = await _json(request)
            except RewriteError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            return await run_in_threadpool(_answer, lambda: work(body))
        return handler

    def render(body: dict[str, Any]) -> None:
        indices = body.get("indices")
        if not isinstance(indices, list) or len(indices) > 100:
            raise RewriteError("indices must be a list of at most 100 sample indices")
        session.page([_int(i, "index") for i in indices], bool(body.get("original")))

    def paste(body: dict[str, Any]) -> None:
        session.paste_at(_int(body, "sample"), _int(body, "y"), _int(body, "x"))

    async def load(request: Request) -> Response:
        name = Path(request.query_params.get("name", "upload")).name
        limit = max_upload_mb * 2**20
        size = int(request.headers.get("content-length") or 0)
        chunks, total = [], 0
        if size <= limit:
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    break
                chunks.append(chunk)
        if size > limit or total > limit:
            return JSONResponse({"error": f"{name} is larger than ui.max_upload_mb={max_upload_mb} MB"}, status_code=400)
        return await run_in_threadpool(_answer, lambda: {"message": session.load(name, b"".join(chunks))})

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/api/image/{index}", image),
        Route("/api/render", posted(render), methods=["POST"]),
        Route("/api/copy", posted(lambda b: session.copy(_int(b, "sample"), b.get("mask"))), methods=["POST"]),
        Route("/api/paste", posted(paste), methods=["POST"]),
        Route("/api/context", posted(lambda b: session.add_context(_int(b, "sample"), b.get("mask"))), methods=["POST"]),
        Route("/api/context/remove", posted(lambda b: session.remove_context(_int(b, "k"))), methods=["POST"]),
        Route("/api/clear", posted(lambda b: session.clear()), methods=["POST"]),
        Route("/api/settings", posted(lambda b: session.set_settings(b)), methods=["POST"]),
        Route("/api/search", posted(lambda b: session.search(_int(b, "start"), _int(b, "n"))), methods=["POST"]),
        Route("/api/execute", posted(lambda b: session.execute(str(b.get("kind", "copy")))), methods=["POST"]),
        Route("/api/progress", lambda request: JSONResponse(asdict(session.progress))),
        Route("/api/revert", posted(lambda b: session.revert()), methods=["POST"]),
        Route("/api/save", posted(lambda b: {"files": session.save()}), methods=["POST"]),
        Route("/api/load", load, methods=["POST"]),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(HostAndOrigin, hosts=allowed_hosts(host, port))
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or one error line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise RewriteError(f"cannot serve on {host}:{port} ({e.strerror or e}); give ui.port=0 for a free port "
                           "or another ui.host") from None
    sock.listen(64)
    return sock


def server_for(session: Session, sock: socket.socket, max_upload_mb: int) -> uvicorn.Server:
    """A uvicorn server for ``session`` on ``sock`` (``.run(sockets=[sock])`` serves until stopped)."""
    host, port = sock.getsockname()[:2]
    app = make_app(session, host, port, max_upload_mb)
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
