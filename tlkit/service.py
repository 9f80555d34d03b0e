"""The inference service: a FastAPI app around a :class:`~tlkit.predict.Predictor`.

``POST /predict`` (one image, multipart field ``file``), ``POST /predict/batch`` (field
``files``, several), ``GET /labels``, ``GET /health``, OpenAPI docs at ``/docs`` (served
offline: the Swagger UI files come with the ``fastapi-offline`` package) and a camera page
at ``/``. The model is loaded once, safely, before the server listens. Every bad upload
gets a 4xx JSON answer ``{"detail": "..."}`` and the server keeps serving: a wrong
Content-Type (415), an empty body (400), a body or file over ``max_bytes`` or more files
than allowed (413, checked while the body streams in), a body slower than ``body_timeout``
(408), not an image or a truncated one (400), a format other than JPEG/PNG/WebP (415), more
pixels than ``max_pixels`` or a decoding over ``max_decode_bytes`` (413). More than
``max_concurrent`` uploads at once get 503 with ``Retry-After``.

Memory is bounded by design (:func:`memory_bound`): at most ``max_concurrent`` uploads are
received and decoded at once, each holding at most :func:`upload_bytes`; bodies stream to
Starlette's spooled files (on disk beyond 1 MiB a file); connections are capped
(``max_connections``) and a connection still waiting for its first request's headers after
``header_timeout`` is closed, as is the oldest such one when a new connection needs room.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, fastapi-offline); importing
this module without it raises a :class:`ServeExtraError` that names the extra.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import importlib.util
import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from tlkit import TlkitError
from tlkit.predict import SERVE_EXTRA, WEB_FORMATS, ImageError, Limits, Predictor


class ServeExtraError(TlkitError):
    """The ``serve`` extra is not installed."""


class ServiceError(TlkitError):
    """The service cannot start with these settings."""


try:
    import uvicorn
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi_offline import FastAPIOffline
    from pydantic import BaseModel
    from starlette.formparsers import MultiPartParser
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
        raise ImportError("no python-multipart", name="python-multipart")
except ImportError as e:
    raise ServeExtraError(f"tlkit serve needs {e.name or 'FastAPI'}: install the serve extra, "
                          f"{SERVE_EXTRA}") from e

UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "application/octet-stream")
MULTIPART_SLACK = 64 * 1024  # room for multipart boundaries and headers around the files
#: The most memory one open connection holds: asyncio reads 256 KiB at a time, uvicorn buffers
#: up to 64 KiB of a body and h11 up to 16 KiB of headers.
CONNECTION_BYTES = 512 * 1024
#: Seconds a client told 503 should wait before it tries again.
RETRY_AFTER_S = 1


def files_allowed(limits: Limits, path: str) -> int:
    """The most files (multipart parts) one request to ``path`` may carry."""
    return limits.max_files if path.rstrip("/").endswith("/batch") else 1


def body_limit(limits: Limits, path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    return files_allowed(limits, path) * limits.max_bytes + MULTIPART_SLACK


def upload_bytes(limits: Limits, input_shape: tuple[int, ...]) -> int:
    """The most memory one upload holds at once: its parts as Starlette keeps them in memory
    (each up to ``spool_max_size``, 1 MiB, beyond that on disk), one encoded file read whole
    (Pillow's WebP reader does), one decoding (``max_decode_bytes``) and the decoded images
    at the model's input size, twice (the list and the batch)."""
    files = limits.max_files
    return (files * MultiPartParser.spool_max_size + limits.max_bytes + limits.max_decode_bytes
            + 2 * files * int(np.prod(input_shape)))


def memory_bound(limits: Limits, input_shape: tuple[int, ...], base: int) -> int:
    """Peak server memory in bytes, for any uploads and connections:

    ``base + max_concurrent * upload_bytes + max_connections * CONNECTION_BYTES``

    where ``base`` is the server's memory after start-up (the model is warmed up with a full
    batch of ``max_files`` images, so inference memory is in it)."""
    return (base + limits.max_concurrent * upload_bytes(limits, input_shape)
            + limits.max_connections * CONNECTION_BYTES)


class Guess(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    label: str
    confidence: float
    unknown: bool
    top_k: list[Guess]
    filename: str | None = None


class Batch(BaseModel):
    predictions: list[Prediction]


def answer_text(answer: dict) -> str:
    """A ``/predict`` answer (its JSON, as a dict) in words: the label, or ``unknown`` below
    the threshold, with its probability, then the top classes."""
    top = ", ".join(f"{g['label']} {g['probability']:.3f}" for g in answer["top_k"])
    said = ("unknown (the top class is below the threshold)" if answer["unknown"]
            else answer["label"])
    return f"{said}; top-class probability {answer['confidence']:.3f}; top classes: {top}"


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class _Refused(Exception):
    """An upload's body broke a limit while it streamed in."""


class _UploadGuard:
    """ASGI middleware for the upload routes. Before the app sees a request it checks the
    Content-Type and the declared length, and lets at most ``max_concurrent`` uploads in
    (503 with Retry-After beyond). The body then streams through to the app, never held
    whole; it is counted on the way: over the byte or file limit is 413, slower than
    ``body_timeout`` is 408, empty is 400."""

    def __init__(self, app, limits: Limits, paths: tuple[str, ...]):
        self.app, self.limits, self.paths = app, limits, paths
        self.active = 0  # uploads let in (the event loop is one thread: no lock needed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ctype = headers.get("content-type", "")
        limit = body_limit(self.limits, scope["path"])
        boundary = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', ctype, re.I)
        multipart = ctype.lower().startswith("multipart/form-data")
        if not multipart or not boundary:
            what = "with a boundary" if multipart else f"not Content-Type {ctype or 'none'!r}"
            reply = _json(415, f"send the image as multipart/form-data (field 'file'), {what}")
            return await reply(scope, receive, send)
        if headers.get("content-length", "").isdigit() and int(headers["content-length"]) > limit:
            return await _json(413, f"request body of {int(headers['content-length']):,} bytes is "
                                    f"over the limit of {limit:,}")(scope, receive, send)
        if self.active >= self.limits.max_concurrent:
            return await _json(503, f"busy: {self.active} uploads in progress, the most at once "
                                    f"(--max-concurrent); try again in {RETRY_AFTER_S} s",
                               {"Retry-After": str(RETRY_AFTER_S)})(scope, receive, send)
        self.active += 1
        try:
            marker = b"--" + (boundary.group(1) or boundary.group(2)).encode("latin-1")
            await self._stream(scope, receive, send, limit, marker)
        finally:
            self.active -= 1

    async def _stream(self, scope, receive, send, limit: int, marker: bytes) -> None:
        """Pass the body to the app as it arrives, counting bytes and parts (``marker``
        starts each part and ends the last)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        files = files_allowed(self.limits, scope["path"])
        size, markers, tail, done = 0, 0, b"", False
        refused: tuple[int, str] | None = None

        async def counted():
            nonlocal size, markers, tail, done, refused
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                refused = (408, f"the upload did not arrive within {self.limits.body_timeout:g} s")
                raise _Refused from None
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                markers += (tail + chunk).count(marker)
                tail = (tail + chunk)[-(len(marker) - 1):]
                done = not message.get("more_body", False)
                if size > limit:
                    refused = (413, f"request body is over the limit of {limit:,} bytes")
                elif markers > files + 1:
                    refused = (413, f"over the limit of {files} file{'s' if files > 1 else ''} "
                                    f"a request to {scope['path']}")
                elif done and size == 0:
                    refused = (400, "empty request body: send an image in multipart field 'file'")
                if refused:
                    raise _Refused
            return message

        async def guarded(message):
            if refused is None:  # the app's answer to a body cut short is replaced below
                await send(message)

        with contextlib.suppress(_Refused):
            await self.app(scope, counted, guarded)
        if refused is not None:
            await _json(*refused)(scope, receive, send)


_HEADERS_END = re.compile(rb"\r?\n\r?\n")
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Length: 0\r\n"
         b"Connection: close\r\n\r\n" % RETRY_AFTER_S)


class _Gate:
    """The connections of one server: at most ``max_connections`` open. A connection whose
    first request's headers have not arrived within ``header_timeout`` is closed, and when all
    are taken a new connection closes the oldest one still waiting for its headers (a slow
    client) or, when none is waiting, is answered 503 and closed. Idle connections between
    requests are closed by uvicorn after ``keep_alive``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.open: set[_Connection] = set()
        self.waiting: dict[_Connection, asyncio.TimerHandle] = {}  # oldest first

    def admit(self, conn: "_Connection") -> bool:
        if len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                return False
            self.close(next(iter(self.waiting)))
        self.open.add(conn)
        self.waiting[conn] = asyncio.get_running_loop().call_later(
            self.limits.header_timeout, self.close, conn)
        return True

    def started(self, conn: "_Connection") -> None:
        """``conn``'s first request headers are in."""
        self.waiting.pop(conn).cancel()

    def close(self, conn: "_Connection") -> None:
        self.forget(conn)
        conn.transport.close()

    def forget(self, conn: "_Connection") -> None:
        self.open.discard(conn)
        timer = self.waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()


class _Connection(asyncio.Protocol):
    """One connection: uvicorn's h11 protocol inside, admitted by the :class:`_Gate`."""

    def __init__(self, inner: asyncio.Protocol, gate: _Gate):
        self.inner, self.gate, self.tail = inner, gate, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)
        if not self.gate.admit(self):
            transport.write(_BUSY)
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self in self.gate.waiting:
            if _HEADERS_END.search(self.tail + data):
                self.gate.started(self)
            self.tail = (self.tail + data)[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def server_config(app, limits: Limits, **options) -> "uvicorn.Config":
    """uvicorn's settings for ``app``: h11 behind a :class:`_Gate` (connection cap, header
    timeout) and ``limits.keep_alive``; ``options`` go to :class:`uvicorn.Config`."""
    gate = _Gate(limits)

    def protocol(**kwargs) -> _Connection:
        return _Connection(H11Protocol(**kwargs), gate)

    return uvicorn.Config(app, http=protocol, timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
                          **options)


def page() -> str:
    """The camera page served at ``/``."""
    return importlib.resources.files("tlkit").joinpath("static/index.html").read_text("utf-8")


def create_app(predictor: Predictor, limits: Limits = Limits()) -> FastAPI:
    """The FastAPI app for ``predictor``, warmed up here with a full batch (so the first request
    is not slow and inference memory is taken before serving: see :func:`memory_bound`)."""
    h, w, c = predictor.input_shape
    lock = threading.Lock()  # one inference at a time: the CPU is busy enough with one
    with lock:
        predictor.proba(np.zeros((limits.max_files, h, w, c), "uint8"))
    html = page()
    app = FastAPIOffline(title="tlkit inference service", version="1",
                         description="Classify images with a model trained by tlkit. Upload JPEG, "
                                     "PNG or WebP as multipart field `file`.")
    app.state.predictor, app.state.limits = predictor, limits
    app.add_middleware(_UploadGuard, limits=limits, paths=("/predict", "/predict/batch"))

    @app.exception_handler(ImageError)
    async def image_error(request: Request, e: ImageError) -> JSONResponse:
        return _json(e.status, str(e))

    def read(upload: UploadFile) -> np.ndarray:
        name = upload.filename or "upload"
        ctype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if ctype not in UPLOAD_TYPES:
            raise ImageError(f"{name} has content type {ctype}; send a JPEG, PNG or WebP image", 415)
        size = upload.file.seek(0, 2)
        if not size:
            raise ImageError(f"{name} is empty: send an image", 400)
        if size > limits.max_bytes:
            raise ImageError(f"{name} is over the limit of {limits.max_bytes:,} bytes", 413)
        upload.file.seek(0)
        return predictor.read(upload.file, name=name, max_pixels=limits.max_pixels,
                              max_decode_bytes=limits.max_decode_bytes, formats=WEB_FORMATS)

    def classify(images: list) -> list[dict]:
        with lock:
            return predictor.classify(np.stack(images), limits.top_k)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return html

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "classes": len(predictor.class_names),
                "input_shape": [h, w, c], "threshold": predictor.threshold}

    @app.get("/labels")
    def labels() -> dict:
        return {"labels": predictor.class_names}

    @app.post("/predict", response_model=Prediction)
    def predict(file: UploadFile = File(..., description="a JPEG, PNG or WebP image")) -> dict:
        return {**classify([read(file)])[0], "filename": file.filename}

    @app.post("/predict/batch", response_model=Batch)
    def predict_batch(files: list[UploadFile] = File(..., description="JPEG, PNG or WebP images")) -> dict:
        results = classify([read(f) for f in files])
        return {"predictions": [{**r, "filename": f.filename} for r, f in zip(results, files)]}

    return app


def app_from_model(model_path: str | Path, threshold: float = 0.5,
                   limits: Limits = Limits()) -> FastAPI:
    """Load the model once (``safe_mode``) and build the app around it."""
    return create_app(Predictor.load(model_path, threshold=threshold), limits)


def _rss_bytes() -> int:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, threshold: float = 0.5,
          limits: Limits = Limits()) -> None:
    """Load the model, then serve it with uvicorn until interrupted."""
    if not 0 <= port <= 65535:
        raise ServiceError(f"--port must be between 0 and 65535, not {port}")
    app = app_from_model(model_path, threshold, limits)
    shape = app.state.predictor.input_shape
    base = _rss_bytes()
    print(f"tlkit serve: memory bound {memory_bound(limits, shape, base) / 2**20:,.0f} MB = "
          f"{base / 2**20:,.0f} MB now + {limits.max_concurrent} uploads at once x "
          f"{upload_bytes(limits, shape) / 2**20:,.0f} MB + {limits.max_connections} connections x "
          f"{CONNECTION_BYTES / 2**20:g} MB", flush=True)
    uvicorn.Server(server_config(app, limits, host=host, port=port, log_level="info")).run()


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` (with its ``state.limits``) with uvicorn in a thread on a free port;
    yields its base URL."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, app.state.limits, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise ServiceError(f"the server on {host}:{port} did not start within {timeout_s:.0f} s")
        time.sleep(0.02)
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
