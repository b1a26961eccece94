"""A check of every API call before gradio sees it: the event exists and is public, and it is given
exactly its inputs, each of the right type. A call that fails gets a plain-words answer (HTTP 404
for an unknown event, 422 for wrong inputs) and one line in the log, never a traceback.

Why here and not in the handlers: gradio converts each input with its component's ``preprocess``
before the handler runs, and a wrongly typed value (``seed='abc'``, ``steps=[1, 2]``) fails inside
gradio with a 40-line traceback and a blank error; missing inputs fail the same way and extra
ones are silently dropped; an unknown event number is an HTTP 500. The routes checked:

- ``POST /gradio_api/queue/join`` (browsers and ``gradio_client``), and ``/run/predict`` for events that
  skip the queue: ``{"fn_index", "data", "session_hash"}``, ``data`` holding one value per input of
  the event, states included (sent as ``null``);
- ``POST /gradio_api/call/<name>``, ``/run/<name>``, ``/api/<name>`` (plain HTTP): ``{"data": [...]}``
  with the inputs of the named endpoint, states included or left out;
- ``POST /gradio_api/call/v2/<name>``: the inputs as a JSON object by parameter name.

Helper events (``api_visibility="private"``) have no name and cannot be called by name; the browser
calls them by number, so by number they stay callable, with the same checks (and the handlers
check their values again: any request is treated as untrusted).

A 422 answer carries gradio's own validation format (``[{"__type__": "validate", "is_valid": false,
"message", "parameter_name"}]``), which ``gradio_client`` raises as a readable ``ValidationError``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re

import gradio as gr
from gradio_client.utils import is_valid_file

log = logging.getLogger("smart3d.app")

API = "/gradio_api"
MAX_BODY_BYTES = 1 << 20          # an API call's JSON (files are uploaded separately)
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAMED = re.compile(rf"{API}/(?:call/v2|call|run|api)/([^/]+)/?")


class Refused(Exception):
    """A call that is not made the way its event expects: ``status`` and ``message`` for the answer."""

    def __init__(self, status: int, message: str, parameter: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.status, self.message, self.parameter = status, message, parameter
        self.reason = reason or message         # the message without the endpoint and parameter name


def _label(block, i: int) -> str:
    return getattr(block, "label", None) or f"input {i + 1}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(block, value, where: str, name: str) -> None:
    """``value`` may be given to ``block`` (type only; ranges and choices are the handlers' job)."""
    if isinstance(block, gr.State) or value is None:
        return
    if isinstance(block, (gr.Number, gr.Slider)):
        ok, kind = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                    "a number")
        # the range gradio checks when it converts the input (in an event with a validator its refusal
        # reaches gradio_client as a bare HTTP 400, as the File type below), made here, in words
        lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
        if ok and not ((lo is None or value >= lo) and (hi is None or value <= hi)):
            ok = False
            kind = (f"a number from {lo:g} to {hi:g}" if lo is not None and hi is not None else
                    f"a number of at least {lo:g}" if lo is not None else f"a number of at most {hi:g}")
    elif isinstance(block, gr.Checkbox):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(block, (gr.Dropdown, gr.Radio)):
        ok, kind = isinstance(value, str), "one of the listed choices (a string)"
    elif isinstance(block, gr.File):
        ok, kind = (isinstance(value, dict) and isinstance(value.get("path"), str),
                    "an uploaded file ({\"path\": ..., \"meta\": {\"_type\": \"gradio.FileData\"}})")
        # the type gradio's File checks when it converts the input: a failed check there, in an event with a
        # validator, reaches gradio_client as a bare HTTP 400, so it is made here, in words
        if ok and block.file_types and not is_valid_file(value["path"], block.file_types):
            ok, kind = False, "a file of one of these types: " + ", ".join(block.file_types)
    else:
        return
    if not ok:
        reason = f"must be {kind}; got {_short(value)}."
        raise Refused(422, f"{where}: {name} {reason}", name, reason)


def _check_inputs(fn, data, where: str, allow_without_state: bool) -> None:
    if not isinstance(data, list):
        raise Refused(422, f"{where}: 'data' must be a list of the inputs; got {_short(data)}.")
    inputs = list(fn.inputs)
    shown = [b for b in inputs if not isinstance(b, gr.State)]
    if allow_without_state and len(data) == len(shown) != len(inputs):
        inputs = shown
    if len(data) != len(inputs):
        names = ", ".join(_label(b, i) for i, b in enumerate(shown))
        raise Refused(422, f"{where} takes {len(shown)} input{'s' * (len(shown) != 1)} ({names}); got {len(data)}.")
    for i, (block, value) in enumerate(zip(inputs, data)):
        _check_value(block, value, where, f"'{_label(block, i)}' (input {i + 1})")


def _parameters(fn) -> list[str]:
    """Parameter names of an event's function, one per input (``gr.Request`` ones left out)."""
    names = [p.name for p in inspect.signature(fn.fn).parameters.values()
             if p.annotation not in (gr.Request, "gr.Request")]
    return names[:len(fn.inputs)]


def check_call(blocks: gr.Blocks, path: str, body) -> None:
    """Raise ``Refused`` unless ``body`` is a well-formed call of the event that ``path`` names."""
    if not isinstance(body, dict):
        raise Refused(422, "The request body must be a JSON object.")
    named = _NAMED.fullmatch(path)
    by_number = path.rstrip("/") == f"{API}/queue/join" or (named and named.group(1) == "predict"
                                                               and "fn_index" in body)   # events without the queue
    if by_number:
        index = body.get("fn_index")
        if not isinstance(index, int) or isinstance(index, bool) or index not in blocks.fns:
            raise Refused(404, f"No event number {_short(index)} in this app.")
        session = body.get("session_hash")
        if not (isinstance(session, str) and SESSION_HASH.fullmatch(session)):
            raise Refused(422, f"session_hash must be 1 to 64 letters, digits, '-' or '_'; got {_short(session)}.")
        fn = blocks.fns[index]
        _check_inputs(fn, body.get("data"), f"/{fn.api_name}" if fn.api_name else f"event {index}", False)
        return
    name = named.group(1)
    fn = next((f for f in blocks.fns.values() if f.api_name == name and f.api_visibility != "private"), None)
    if fn is None:
        public = sorted(f"/{f.api_name}" for f in blocks.fns.values() if f.api_name and f.api_visibility == "public")
        raise Refused(404, f"No API endpoint /{name}; the endpoints are: {', '.join(public)}.")
    if "/call/v2/" in path:
        params = _parameters(fn)
        unknown = sorted(set(body) - set(params) - {"oauth_token"})
        if unknown:
            raise Refused(422, f"/{name} has no parameter {', '.join(unknown)}; its parameters are: "
                          f"{', '.join(params)}.")
        for block, param in zip(fn.inputs, params):
            if param in body:
                _check_value(block, body[param], f"/{name}", f"'{param}'")
        return
    _check_inputs(fn, body.get("data"), f"/{name}", True)


class RequestGuard:
    """ASGI middleware running ``check_call`` on the API routes (``launch(app_kwargs={"middleware": ...})``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or not (
                path.rstrip("/") == f"{API}/queue/join" or _NAMED.fullmatch(path)):
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY_BYTES:
                return await _answer(send, Refused(413, f"The request is larger than {MAX_BODY_BYTES:,} bytes."))
        raw = b"".join(chunks)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        try:
            check_call(scope["app"].get_blocks(), path, body)
        except Refused as err:
            log.info("refused %s: %s", path, err.message)
            return await _answer(send, err)

        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


async def _answer(send, err: Refused) -> None:
    detail = ([{"__type__": "validate", "is_valid": False, "message": err.reason,
                "parameter_name": err.parameter or "request"}] if err.status == 422 else err.message)
    payload = json.dumps({"detail": detail, "error": err.message}).encode()
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
