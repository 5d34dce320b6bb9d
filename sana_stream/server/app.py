"""The streaming-edit server: one port, one asyncio loop.

    GET /            the browser client (clients/web)         GET /health   200 while serving
    GET /metrics     Prometheus text                           WS  /ws       signaling + control (one session)
    WS  /ws/world    the remote world-model step() API (msgpack; only when a world model is served)

Media goes over WebRTC (aiortc). Sessions share the loaded models and take turns on them chunk by chunk.
A session plays video (prompted) or, when a world model is served, a world moved by the viewer's keys.
Nothing a client sends reaches a session unchecked (protocol.py); a bad message is answered with an error to
that client alone, and a session only ever ends itself and its own sockets.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import hmac
import mimetypes
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .log import log_event
from .media import DEFAULT_BITRATE, set_bitrate
from .metrics import Metrics
from .protocol import CODECS, MAX_MESSAGE_BYTES, Message, ProtocolError, encode, parse_message
from .scheduler import ChunkScheduler
from .session import Session
from .sources import VideoSource, WorldSource
from .world import serve_world_socket

WEB_ROOT = Path(__file__).resolve().parents[2] / "clients" / "web"  # the repository's browser client
CONTROL_PATH, WORLD_PATH = "/ws", "/ws/world"
CLOSE_POLICY, CLOSE_FULL, CLOSE_ENDED = 1008, 1013, 1000
OFFER_TIMEOUT_S = 60.0  # a control connection must send its offer within this
CONNECTIONS_PER_SESSION = 4  # open sockets allowed per session slot (viewers waiting, world clients, ...)
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
                                "media-src 'self' blob:"),
)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the one taken is passed to on_ready)
    token: str | None = None  # if set, /ws needs ?token=... or an "Authorization: Bearer ..." header
    max_sessions: int = 4
    allowed_origins: tuple[str, ...] = ()  # besides the server's own origin
    bitrate: int = DEFAULT_BITRATE  # bit/s at which encoders start; REMB moves it within [½×, 2×]
    codec: str | None = None  # "vp8" or "h264" forced on every session; None: the offer's first choice
    web_root: Path | None = field(default_factory=lambda: WEB_ROOT)

    def validate(self) -> None:
        if not isinstance(self.max_sessions, int) or self.max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive int, got {self.max_sessions!r}")
        if not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535], got {self.port!r}")
        if self.codec is not None and self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("a token must have at least 8 characters")


class Server:
    """pipe: a video Pipeline for video sessions; world: a worldmodel.WorldModel for world sessions and
    /ws/world, or None (world mode is then refused with a clear error)."""

    def __init__(self, pipe: Any, config: ServerConfig | None = None, world: Any = None):
        if getattr(pipe, "family", None) != "video":
            raise ValueError(f"the server streams video: it needs a video pipeline, got {getattr(pipe, 'family', pipe)!r}")
        self.pipe, self.config, self.world = pipe, config or ServerConfig(), world
        self.config.validate()
        self.metrics = Metrics()
        self.sessions: dict[str, Session] = {}
        self.scheduler = ChunkScheduler()  # the sessions' chunks, batched; the model's lock
        self._stopping = False
        self._connections = 0
        self._decode_slots: asyncio.Semaphore | None = None  # made in run(), on the serving loop
        self._tasks: set[asyncio.Task] = set()

    # ----- lifecycle ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until `stop` is set, then close every session and connection before returning."""
        set_bitrate(self.config.bitrate)
        self._decode_slots = asyncio.Semaphore(1)
        async with serve(self._connection, self.config.host, self.config.port, process_request=self._route,
                         max_size=MAX_MESSAGE_BYTES, max_queue=4, ping_interval=10, ping_timeout=20,
                         close_timeout=5) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            log_event("listening", host=self.config.host, port=port, max_sessions=self.config.max_sessions,
                      token=self.config.token is not None)
            if on_ready is not None:
                on_ready(port)
            await stop.wait()
            self._stopping = True
            log_event("shutdown", sessions=len(self.sessions))
            await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
            server.close()  # closes the remaining sockets with 1001 (going away)
            await server.wait_closed()

    # ----- HTTP -----------------------------------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == CONTROL_PATH or (path == WORLD_PATH and self.world is not None):
            return None  # go on with the WebSocket handshake
        if path == "/health":
            return _response(503 if self._stopping else 200, "stopping\n" if self._stopping else "ok\n")
        if path == "/metrics":
            text = self.metrics.render((s.gauges() for s in self.sessions.values()), self.config.max_sessions,
                                       self.scheduler.batches, self.scheduler.batched_chunks)
            return _response(200, text, "text/plain; version=0.0.4; charset=utf-8")
        file = self._static_file(path)
        if file is None:
            return _response(404, f"not found: {path[:100]}\n")
        return _response(200, file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream")

    def _static_file(self, path: str) -> Path | None:
        """A file directly in web_root named by `path`; only names listed there, so no path can escape it."""
        root = self.config.web_root
        if root is None or not root.is_dir():
            return None
        name = "index.html" if path == "/" else path.removeprefix("/")
        files = {f.name: f for f in root.iterdir() if f.is_file() and f.suffix in (".html", ".js", ".css")}
        return files.get(name)

    # ----- WebSockets -----------------------------------------------------------------------------------------

    async def _connection(self, ws: ServerConnection) -> None:
        self._connections += 1
        try:
            await self._serve_connection(ws)
        finally:
            self._connections -= 1

    async def _serve_connection(self, ws: ServerConnection) -> None:
        problem = self._refusal(ws.request)
        if problem is not None:
            reason, message = problem
            self.metrics.rejected[reason] += 1
            log_event("refused", reason=reason, peer=str(ws.remote_address))
            await _send(ws, encode("error", message=message, code=reason))
            await ws.close(CLOSE_POLICY, message[:120])
            return
        if urlsplit(ws.request.path).path == WORLD_PATH:
            await serve_world_socket(ws, self.world, self.scheduler.lock)
        else:
            await self._control(ws)

    def _refusal(self, request: Request) -> tuple[str, str] | None:
        """(reason, message) if this request may not open a socket: foreign Origin, missing token, or too many
        sockets open."""
        if self._connections > CONNECTIONS_PER_SESSION * self.config.max_sessions:
            return "connections", "too many connections open; try again later"
        origin = request.headers.get("Origin")
        host = request.headers.get("Host", "")
        own = {f"http://{host}", f"https://{host}"}
        if origin is not None and origin not in own and origin not in self.config.allowed_origins:
            return "origin", f"origin {origin[:80]} is not allowed to use this server"
        token = self.config.token
        if token is not None:
            query = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
            header = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not any(hmac.compare_digest(given.encode(), token.encode()) for given in (query, header) if given):
                return "token", "a valid token is required (connect to /ws?token=...)"
        return None

    async def _control(self, ws: ServerConnection) -> None:
        session: Session | None = None

        def end(reason: str) -> None:
            task = asyncio.create_task(self._end(ws, session, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            while True:
                try:
                    # A connection that never starts a session is closed: sockets are not free.
                    frame = await asyncio.wait_for(ws.recv(), OFFER_TIMEOUT_S if session is None else None)
                except asyncio.TimeoutError:
                    message = f"no offer within {OFFER_TIMEOUT_S:.0f} s"
                    await _send(ws, encode("error", message=message, code="timeout"))
                    await ws.close(CLOSE_POLICY, message)
                    return
                msg = None
                try:
                    msg = parse_message(frame)
                    if msg.type == "offer":
                        if session is not None:
                            raise ProtocolError("this connection already has a session; open a new one", msg.id)
                        session = await self._open(ws, msg, end)
                        if session is None:
                            return
                    elif session is None:
                        raise ProtocolError(f"send an offer before {msg.type}", msg.id)
                    else:
                        await session.handle(msg)
                        await _send(ws, encode("ok", request=msg.type, id=msg.id))
                except ProtocolError as err:
                    self.metrics.errors["protocol"] += 1
                    request_id = err.request_id if err.request_id is not None else getattr(msg, "id", None)
                    await _send(ws, encode("error", message=str(err), id=request_id))
        except ConnectionClosed:
            if ws.close_code == 1009:
                self.metrics.errors["oversize"] += 1
        except Exception as err:  # noqa: BLE001 - a bug or a failing model: this connection ends, the rest go on
            self.metrics.errors["internal"] += 1
            log_event("internal_error", logging.ERROR, session=getattr(session, "id", None), error=repr(err))
            await _send(ws, encode("error", message=f"internal error ({type(err).__name__}); this session is "
                                                    "closed", code="internal"))
            await ws.close(1011, "internal error")
        finally:
            if session is not None:
                await self._close_session(session)

    async def _open(self, ws: ServerConnection, msg: Message, end: Callable[[str], None]) -> Session | None:
        """Start a session for an offer; None if the server is full (the client has been told)."""
        f = msg.fields
        if f["mode"] == "world" and self.world is None:
            raise ProtocolError("world mode is not available on this server (it serves no world model; "
                                "start it with --world PATH)", msg.id)
        limit = self.config.max_sessions
        if self._stopping or len(self.sessions) >= limit:
            self.metrics.rejected["full"] += 1
            message = "server is shutting down" if self._stopping else \
                f"server full: {limit} of {limit} sessions in use; try again later"
            await _send(ws, encode("error", message=message, code="full", id=msg.id))
            await ws.close(CLOSE_FULL, message[:120])
            return None
        started = time.perf_counter()
        sid = secrets.token_hex(6)
        session = Session(sid, lambda text: _send(ws, text), end, self.metrics,
                          codec=f["codec"] or self.config.codec, decode_slots=self._decode_slots)
        self.sessions[sid] = session  # the slot is taken before the first await
        try:
            answer = await session.start(f["sdp"], lambda: self._source(f["mode"], f["prompt"], f["seed"]))
        except BaseException:
            await self._close_session(session)
            raise
        self.metrics.sessions_started += 1
        log_event("session_start", session=sid, mode=f["mode"], peer=str(ws.remote_address),
                  setup_ms=round(1e3 * (time.perf_counter() - started), 1))
        await _send(ws, encode("answer", sdp=answer, session=sid, fps=session.source.fps, id=msg.id))
        return session

    async def _source(self, mode: str, prompt: str, seed: int | None) -> VideoSource | WorldSource:
        if mode == "world":
            return await asyncio.get_running_loop().run_in_executor(
                None, WorldSource, self.world, prompt, seed, self.scheduler)
        return await VideoSource.create(self.pipe, prompt, seed, self.scheduler)

    async def _close_session(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            await session.close()
            log_event("session_end", session=session.id, frames_sent=session.stats()["frames_sent"])

    async def _end(self, ws: ServerConnection, session: Session | None, reason: str) -> None:
        """A session ended on its own (peer gone, timeout, generation failed): tell the client, close all."""
        log_event("session_ended", session=getattr(session, "id", None), reason=reason)
        await _send(ws, encode("error", message=f"session ended: {reason}", code="ended"))
        if session is not None:
            await self._close_session(session)
        await ws.close(CLOSE_ENDED, reason[:120])


async def _send(ws: ServerConnection, text: str) -> None:
    """Send, ignoring a socket that has closed meanwhile (its handler is already cleaning up)."""
    try:
        await ws.send(text)
    except ConnectionClosed:
        pass


def _response(status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8") -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Type", content_type), ("Content-Length", str(len(data))), *SECURITY_HEADERS])
    return Response(status, http.HTTPStatus(status).phrase, headers, data)
