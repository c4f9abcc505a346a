"""The front that answers a bad request to the served ddhpose model with one line, before
MLflow's scoring server parses it.

:class:`RequestFront` stands in front of MLflow's scoring app under ``mlflow models serve``
(:func:`install_request_front`, called when the model is loaded): MLflow parses the body and
enforces the params schema before any model code runs, and its own answers to a malformed body
(bad JSON, an empty body) or a wrong-typed param are several lines that reprint the input, while
it drops an unknown param key with a warning and answers 200. The front refuses all of these first
with one line (400; 413 for the limits; 415 for a body that is not ``application/json``; the checks
are :func:`ddhpose.registry.request.check_body`), names an unknown key and the known ones, and
makes any other 4xx answer of MLflow's one line (a stack trace goes to the server's log, not to
the client).
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from typing import Any

from ddhpose.inference.limits import MAX_REQUEST_BYTES, MAX_SERVED_FRAMES
from ddhpose.registry.request import RequestError, check_body

MAX_MESSAGE_CHARS = 300  # a 4xx message of MLflow's longer than this is cut
_SCORING_APP_MODULE = "mlflow.pyfunc.scoring_server.app"



def one_line_message(message: str) -> str:
    """MLflow's multi-line 4xx message as one line: the reason after its last ``Error:`` (the
    text before it reprints the input), whitespace folded, cut at :data:`MAX_MESSAGE_CHARS`."""
    text = str(message)
    if "\nError:" in text:
        text = text.rsplit("\nError:", 1)[1]
    for cut in ("\nInput:", "\nReceived"):
        text = text.split(cut, 1)[0]
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


def _json_response(status: int, error_code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error_code": error_code, "message": message}).encode()


class RequestFront:
    """An ASGI app in front of MLflow's scoring app (``POST /invocations``): bounds the body
    (:data:`~ddhpose.inference.limits.MAX_REQUEST_BYTES`, refused unread from its
    Content-Length), refuses a non-JSON body, bad JSON, unknown or wrong-typed params and
    over-sized requests with one line (:func:`check_body`), then hands the same bytes to MLflow;
    any 4xx answer of MLflow's is made one line (:func:`one_line_message`). Other paths (``/ping``,
    ``/version``, lifespan) go to MLflow's app untouched."""

    def __init__(self, app: Any, window: int = 1) -> None:
        self.app, self.window = app, int(window)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/invocations" \
                or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        too_big = _json_response(
            413, "BAD_REQUEST", f"request body over {MAX_REQUEST_BYTES} bytes: send at most "
            f"{MAX_SERVED_FRAMES} frames per request, or run ddhpose infer on long sequences")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_REQUEST_BYTES:
            await _reply(send, *too_big)  # the body is never read
            return
        mime = headers.get("content-type", "").split(";")[0].strip().lower()
        if mime != "application/json":
            await _reply(send, *_json_response(
                415, "BAD_REQUEST", f"Content-Type must be application/json, got "
                f"{mime or 'none'}: send {{\"inputs\": ..., \"params\": {{...}}}}"))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                await _reply(send, *too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            await asyncio.to_thread(check_body, body, self.window)
        except RequestError as exc:
            await _reply(send, *_json_response(exc.get_http_status_code(), exc.error_code,
                                               exc.message))
            return
        await self.app(scope, _replay(body, receive), _OneLine4xx(send))


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` giving ``body`` once, then the client's own messages (disconnect)."""
    given = False

    async def replay() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _OneLine4xx:
    """An ASGI ``send`` that passes everything on but a 4xx JSON answer, which it rewrites with
    :func:`one_line_message` (and whose stack trace it writes to the server's stderr)."""

    def __init__(self, send: Any) -> None:
        self.send, self.start, self.chunks = send, None, []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("message"), str):
            trace = answer.pop("stack_trace", None)
            if trace:
                print(f"ddhpose served model: {self.start['status']} answered; MLflow's stack "
                      f"trace:\n{trace}", file=sys.stderr, flush=True)
            answer["message"] = one_line_message(answer["message"])
            body = json.dumps(answer).encode()
        await _reply(self.send, self.start["status"], body,
                     content_type=_header(self.start, "content-type") or "application/json")


def _header(start: dict, name: str) -> str | None:
    for key, value in start.get("headers", []):
        if key.decode("latin-1").lower() == name:
            return value.decode("latin-1")
    return None


async def _reply(send: Any, status: int, body: bytes,
                 content_type: str = "application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode("latin-1")),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def install_request_front(window: int) -> bool:
    """Inside ``mlflow models serve``: have uvicorn serve MLflow's scoring app behind
    :class:`RequestFront`; True if installed (once per process).

    ``mlflow models serve`` runs ``uvicorn mlflow.pyfunc.scoring_server.app:app``; that module
    loads the model (so :meth:`DDHPoseModel.load_context` calls this while the module is being
    imported) and then builds its FastAPI ``app``. A module may replace itself in
    ``sys.modules`` while it is imported (Python's import system returns the replacement), so
    this puts in a stand-in module whose ``app`` is the real one behind the front and whose
    other names are the real module's. MLflow offers no hook for middleware in front of its
    scoring app; elsewhere (``pyfunc.load_model`` in Python, ``ddhpose infer``) nothing changes,
    and if a later MLflow serves models differently the front is simply missing: MLflow's own
    answers come back and the model's own checks still hold.
    """
    module = sys.modules.get(_SCORING_APP_MODULE)
    if module is None or isinstance(module, _FrontedAppModule) or hasattr(module, "app"):
        return False  # not being imported right now (or already fronted)
    sys.modules[_SCORING_APP_MODULE] = _FrontedAppModule(module, window)
    return True


class _FrontedAppModule(types.ModuleType):
    """Stands in for ``mlflow.pyfunc.scoring_server.app``: its ``app`` behind
    :class:`RequestFront`, every other name the real module's."""

    def __init__(self, module: types.ModuleType, window: int) -> None:
        super().__init__(module.__name__, module.__doc__)
        for name in ("__file__", "__loader__", "__package__", "__spec__", "__path__"):
            if hasattr(module, name):
                self.__dict__[name] = getattr(module, name)
        self.__dict__["_fronted_module"] = module
        self.__dict__["_fronted_window"] = int(window)

    def __getattr__(self, name: str) -> Any:  # only names not set on the stand-in itself
        value = getattr(self.__dict__["_fronted_module"], name)
        if name == "app":
            value = RequestFront(value, window=self.__dict__["_fronted_window"])
            self.__dict__["app"] = value
        return value
