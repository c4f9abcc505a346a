"""eval.smooth_window: 0 (off) or an odd window >= 3, refused in one line naming the key."""

from __future__ import annotations

import pytest
from demo_config import demo_params

from ddhpose.config import schema as P
from ddhpose.errors import ConfigError


def _with_window(value):
    d = demo_params().to_dict()
    d["eval"]["smooth_window"] = value
    return P.Params.from_dict(d)


@pytest.mark.parametrize("value", [0, 3, 9, 31])
def test_accepted_windows(value):
    assert _with_window(value).eval.smooth_window == value


@pytest.mark.parametrize(("value", "problem"), [
    (1, "must be 0 (off) or an odd number >= 3, got 1"),
    (4, "must be 0 (off) or an odd number >= 3, got 4"),
    (-3, "must be 0 (off) or an odd number >= 3"),
    (True, "expected an integer, got a boolean"),
])
def test_refused_windows_name_the_key(value, problem):
    with pytest.raises(ConfigError) as err:
        _with_window(value)
    msg = str(err.value)
    assert "params key 'eval.smooth_window'" in msg and problem in msg, msg
    assert "\n" not in msg


def test_the_demo_default_is_9():
    assert demo_params().eval.smooth_window == 9
