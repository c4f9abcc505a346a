"""One request to the served ddhpose model: its checks.

:func:`check_params` and :func:`check_size` check a request's params and size against
:mod:`ddhpose.inference.limits` (the bounds ``ddhpose infer`` shares); :func:`split_rows` splits
the input rows into people by ``params.tracks`` and orders them by ``params.frames`` (the request
format is in :mod:`ddhpose.registry.served_model`); :func:`check_body` makes these checks on a raw
JSON body for the front (:mod:`ddhpose.registry.front`) that answers a bad request with one line
before MLflow's scoring server parses it. :class:`RequestError` is HTTP 400 with one line,
:class:`RequestTooLarge` HTTP 413.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ddhpose.inference.limits import (
    MAX_HYPOTHESES,
    MAX_SERVED_FRAMES,
    MAX_SERVED_WORK,
    MAX_STEPS,
    served_work,
)
from ddhpose.keypoints.layouts import LAYOUTS, accepted_layouts
from ddhpose.keypoints.readers import TRACK_ID

DEFAULT_PARAMS: dict[str, Any] = {
    "layout": "auto", "image_size": [1000.0, 1000.0], "hypotheses": 1, "steps": 1, "seed": 0,
    "tracks": [], "frames": [], "uncertainty": False,
}
# ``layout: auto`` (the default): the layout the joint count names (LAYOUT_BY_JOINTS: 25, 26, 33,
# 133 joints), else ``h36m17`` (17 joints stay Human3.6M-17 unless the request says otherwise)
AUTO_LAYOUT = "auto"
FALLBACK_LAYOUT = "h36m17"


class RequestError(MlflowException):
    """A bad request: HTTP 400 with exactly this one-line message.

    MLflow's scoring server rewrites ``message`` to ``Failed to predict data '<the whole input
    array>'. Error: ...`` (hundreds of lines); the property keeps the reason alone.
    """

    def __init__(self, reason: str) -> None:
        self._reason = " ".join(str(reason).split())
        super().__init__(self._reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:  # ignore the server's rewrite (see class doc)
        pass


class RequestTooLarge(RequestError):
    """A request over a bound of :mod:`ddhpose.inference.limits`: HTTP 413, one line."""

    def get_http_status_code(self) -> int:
        return 413


def _bad(reason: str) -> RequestError:
    return RequestError(reason)


def _describe(value: Any) -> str:
    """A short repr of a request value for a message (never a whole array)."""
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_params(params: Any) -> dict[str, Any]:
    """The request's ``params`` checked (keys, types, ranges) and merged over
    :data:`DEFAULT_PARAMS`; :class:`RequestError` naming the key otherwise."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _bad(f"params must be a JSON object with the keys {', '.join(DEFAULT_PARAMS)}; "
                   f"got {_describe(params)}")
    unknown = sorted(str(k) for k in params if k not in DEFAULT_PARAMS)
    if unknown:
        raise _bad(f"unknown params {unknown} (known: {', '.join(DEFAULT_PARAMS)})")
    p = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if v is not None}}
    if not isinstance(p["layout"], str):
        raise _bad(f"params.layout must be a string such as 'coco17' or 'h36m17', got "
                   f"{_describe(p['layout'])}")
    if p["layout"] != AUTO_LAYOUT and p["layout"] not in LAYOUTS:
        raise _bad(f"params.layout: unknown keypoint layout {_describe(p['layout'])} (known: "
                   f"{AUTO_LAYOUT}, {accepted_layouts()})")
    tracks, frames = p["tracks"], p["frames"]
    if not isinstance(tracks, (list, tuple, np.ndarray)) or not all(
            isinstance(t, str) and TRACK_ID.match(t) for t in tracks):
        bad = next((t for t in tracks if not (isinstance(t, str) and TRACK_ID.match(t))), tracks
                   ) if isinstance(tracks, (list, tuple, np.ndarray)) else tracks
        raise _bad(f"params.tracks must be a list of track ids, one per input row, each a string "
                   f"of 1-64 letters, digits, '_' or '-' (e.g. [\"1\", \"1\", \"2\"]), got "
                   f"{_describe(bad)}")
    if not isinstance(frames, (list, tuple, np.ndarray)) or not all(
            _is_int(f) and 0 <= f < 2**31 for f in frames):
        bad = next((f for f in frames if not (_is_int(f) and 0 <= f < 2**31)), frames
                   ) if isinstance(frames, (list, tuple, np.ndarray)) else frames
        raise _bad(f"params.frames must be a list of frame numbers (integers >= 0), one per "
                   f"input row, got {_describe(bad)}")
    if not isinstance(p["uncertainty"], (bool, np.bool_)):
        raise _bad(f"params.uncertainty must be true or false, got {_describe(p['uncertainty'])}")
    size = p["image_size"]
    if not (isinstance(size, (list, tuple, np.ndarray)) and len(size) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in size)):
        raise _bad(f"params.image_size must be [W, H] in pixels, got {_describe(size)}")
    for key, top in (("hypotheses", MAX_HYPOTHESES), ("steps", MAX_STEPS)):
        if not _is_int(p[key]) or not 1 <= p[key] <= top:
            raise _bad(f"params.{key} must be an integer in 1..{top}, got {_describe(p[key])}")
    if not _is_int(p["seed"]) or not 0 <= p["seed"] < 2**63:
        raise _bad(f"params.seed must be an integer in 0..2**63-1, got {_describe(p['seed'])}")
    return p


@dataclass(frozen=True)
class RowTrack:
    """The input rows of one person of a request, in frame order.

    Attributes:
        track: the track id (None for a request without ``params.tracks``).
        rows: (n,) indices of the request's input rows, sorted by frame.
        frames: (n,) the frame number of each of these rows, strictly increasing.
    """

    track: str | None
    rows: np.ndarray
    frames: np.ndarray

    @property
    def span(self) -> int:
        """Frames lifted for this track: first to last frame, gaps included."""
        return int(self.frames[-1] - self.frames[0] + 1)


def split_rows(n_rows: int, tracks: Any = (), frames: Any = ()) -> list[RowTrack]:
    """A request's ``n_rows`` input rows split by ``params.tracks`` (one id per row; empty: one
    person) and ordered by ``params.frames`` (one frame number per row; empty: each track's rows
    are consecutive frames in request order). Tracks come in the order of their first row.
    :class:`RequestError` for a list whose length is not ``n_rows`` or a frame given twice for
    one track."""
    tracks, frames = list(tracks), list(frames)
    for key, values in (("tracks", tracks), ("frames", frames)):
        if values and len(values) != n_rows:
            raise _bad(f"params.{key} has {len(values)} entries for {n_rows} input rows: give "
                       f"one per row")
    ids = [str(t) for t in tracks] if tracks else [None] * n_rows
    order: dict[str | None, list[int]] = {}
    for row, tid in enumerate(ids):
        order.setdefault(tid, []).append(row)
    out = []
    for tid, rows in order.items():
        if frames:
            fr = np.asarray([frames[r] for r in rows], dtype=np.int64)
            sort = np.argsort(fr, kind="stable")
            rows_a, fr = np.asarray(rows, dtype=np.int64)[sort], fr[sort]
            twice = np.flatnonzero(np.diff(fr) == 0)
            if twice.size:
                i = int(twice[0])
                who = f"track {tid}" if tid is not None else "the input"
                raise _bad(f"params.frames: {who} has frame {int(fr[i])} twice (input rows "
                           f"{int(rows_a[i])} and {int(rows_a[i + 1])})")
        else:
            rows_a = np.asarray(rows, dtype=np.int64)
            fr = np.arange(len(rows), dtype=np.int64)
        out.append(RowTrack(tid, rows_a, fr))
    return out


def check_size(frames: int, hypotheses: int, steps: int, window: int,
               spans: list[int] | None = None) -> None:
    """:class:`RequestTooLarge` if a request is over a bound of :mod:`ddhpose.inference.limits`.

    ``spans``: the frames lifted per track (:attr:`RowTrack.span`, gaps included); default one
    sequence of ``frames`` frames. The frame bound is on their sum, the work is summed per track.
    """
    spans = [int(frames)] if spans is None else [int(s) for s in spans]
    frames = sum(spans)
    if frames > MAX_SERVED_FRAMES:
        raise RequestTooLarge(f"{frames} frames in one request: the served model takes at most "
                              f"{MAX_SERVED_FRAMES}; split the sequence, or run ddhpose infer on "
                              f"it (no frame limit)")
    work = sum(served_work(hypotheses, steps, s, window) for s in spans)
    if work > MAX_SERVED_WORK:
        raise RequestTooLarge(f"hypotheses x steps x max(frames, window {window}) = {work} is over "
                              f"the served model's {MAX_SERVED_WORK}: ask for fewer, or run "
                              f"ddhpose infer")


def check_body(body: bytes, window: int) -> None:
    """The checks :class:`~ddhpose.registry.front.RequestFront` makes on a JSON request body
    before MLflow parses it: :class:`RequestError` (400) or :class:`RequestTooLarge` (413), each
    one line."""
    usage = 'send {"inputs": <T x J x 2|3 keypoints>, "params": {...}}'
    if not body.strip():
        raise _bad(f"empty request body: {usage}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise _bad(f"request body is not valid JSON ({exc}): {usage}") from None
    if not isinstance(payload, dict):
        raise _bad(f"request body must be a JSON object, got a JSON {type(payload).__name__}: "
                   f"{usage}")
    unknown = sorted(str(k) for k in payload if k not in ("inputs", "params"))
    if unknown or "inputs" not in payload:
        what = f"unknown request keys {unknown}" if unknown else "no inputs in the request"
        raise _bad(f"{what} (known: inputs, params): {usage}")
    p = check_params(payload.get("params"))
    inputs = payload["inputs"]
    if isinstance(inputs, dict) and len(inputs) == 1:  # a named tensor
        inputs = next(iter(inputs.values()))
    if not (isinstance(inputs, list) and inputs and isinstance(inputs[0], list)
            and inputs[0] and isinstance(inputs[0][0], list)):
        raise _bad(f"inputs must be T x J x 2|3 keypoints (a list of rows of J joints of "
                   f"numbers, J = 17, 25, 26, 33 or 133), got {_describe(inputs)}")
    groups = split_rows(len(inputs), p["tracks"], p["frames"])
    check_size(len(inputs), p["hypotheses"], p["steps"], window, [g.span for g in groups])
