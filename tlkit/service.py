"""The inference service: a FastAPI app around a :class:`~tlkit.serve.Predictor`.

``POST /predict`` (one image, multipart field ``file``), ``POST /predict/batch`` (field
``files``, several), ``GET /labels``, ``GET /health``, OpenAPI docs at ``/docs`` and a camera
page at ``/``. The model is loaded once, safely, before the server listens. Every bad upload
gets a 4xx JSON answer ``{"detail": "..."}`` and the server keeps serving: a wrong
Content-Type (415), an empty body (400), a body or file over ``max_bytes`` (413, checked
while the body streams in), not an image or a truncated one (400), a format other than
JPEG/PNG/WebP (415), more pixels than ``max_pixels`` (413: a decompression bomb).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); importing this module
without it raises a :class:`ServeExtraError` that names the extra.
"""
from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from tlkit import TlkitError
from tlkit.serve import SERVE_EXTRA, WEB_FORMATS, ImageError, Limits, Predictor


class ServeExtraError(TlkitError):
    """The ``serve`` extra is not installed."""


class ServiceError(TlkitError):
    """The service cannot start with these settings."""


try:
    import uvicorn
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel

    if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
        raise ImportError("no python-multipart", name="python-multipart")
except ImportError as e:
    raise ServeExtraError(f"tlkit serve needs {e.name or 'FastAPI'}: install the serve extra, "
                          f"{SERVE_EXTRA}") from e

UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "application/octet-stream")
MULTIPART_SLACK = 64 * 1024  # room for multipart boundaries and headers around the files


def body_limit(limits: Limits, path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    files = limits.max_files if path.rstrip("/").endswith("/batch") else 1
    return files * limits.max_bytes + MULTIPART_SLACK


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


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class _UploadGuard:
    """ASGI middleware for the POST routes: checks the Content-Type and reads the body up to
    the limit (stopping as soon as it is over), before FastAPI parses any of it."""

    def __init__(self, app, limits: Limits, paths: tuple[str, ...]):
        self.app, self.limits, self.paths = app, limits, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ctype = headers.get("content-type", "")
        limit = body_limit(self.limits, scope["path"])
        if not ctype.lower().startswith("multipart/form-data"):
            reply = _json(415, f"send the image as multipart/form-data (field 'file'), "
                               f"not Content-Type {ctype or 'none'!r}")
            return await reply(scope, receive, send)
        if headers.get("content-length", "").isdigit() and int(headers["content-length"]) > limit:
            return await _json(413, f"request body of {int(headers['content-length']):,} bytes is "
                                    f"over the limit of {limit:,}")(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _json(413, f"request body is over the limit of {limit:,} bytes")(
                    scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        if size == 0:
            return await _json(400, "empty request body: send an image in multipart field 'file'")(
                scope, receive, send)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def page() -> str:
    """The camera page served at ``/``."""
    return importlib.resources.files("tlkit").joinpath("static/index.html").read_text("utf-8")


def create_app(predictor: Predictor, limits: Limits = Limits()) -> FastAPI:
    """The FastAPI app for ``predictor`` (warmed up here, so the first request is not slow)."""
    h, w, c = predictor.input_shape
    lock = threading.Lock()  # one inference at a time: the CPU is busy enough with one
    with lock:
        predictor.proba(np.zeros((1, h, w, c), "uint8"))
    html = page()
    app = FastAPI(title="tlkit inference service", version="1",
                  description="Classify images with a model trained by tlkit. Upload JPEG, PNG "
                              "or WebP as multipart field `file`.")
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
        data = upload.file.read(limits.max_bytes + 1)
        if not data:
            raise ImageError(f"{name} is empty: send an image", 400)
        if len(data) > limits.max_bytes:
            raise ImageError(f"{name} is over the limit of {limits.max_bytes:,} bytes", 413)
        return predictor.read(data, name=name, max_pixels=limits.max_pixels, formats=WEB_FORMATS)

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
        if len(files) > limits.max_files:
            raise ImageError(f"{len(files)} files, over the limit of {limits.max_files} a batch", 413)
        results = classify([read(f) for f in files])
        return {"predictions": [{**r, "filename": f.filename} for r, f in zip(results, files)]}

    return app


def app_from_model(model_path: str | Path, threshold: float = 0.5, limits: Limits = Limits()) -> FastAPI:
    """Load the model once (``safe_mode``) and build the app around it."""
    return create_app(Predictor.load(model_path, threshold=threshold), limits)


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, threshold: float = 0.5,
          limits: Limits = Limits()) -> None:
    """Load the model, then serve it with uvicorn until interrupted."""
    if not 0 <= port <= 65535:
        raise ServiceError(f"--port must be between 0 and 65535, not {port}")
    app = app_from_model(model_path, threshold, limits)
    uvicorn.run(app, host=host, port=port, log_level="info")


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yields its base URL."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
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
