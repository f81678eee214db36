"""Every bad configuration or frame array is refused with a message naming field and range."""

import numpy as np
import pytest

from eventconv.core.config import Config
from eventconv.core.ranges import ConfigError


def base(**changes):
    obj = {"height": 8, "width": 6, "channels_in": 2, "channels_out": 3, "kernel_size": 3,
           "weights": np.ones((3, 2, 3, 3), int).tolist(), "bias": [0, 5, -5],
           "threshold": 4, "shift": 2, "mode": "event"}
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not None}


def test_valid_config_round_trips():
    config = Config.from_dict(base())
    assert Config.from_dict(config.to_dict()).to_dict() == config.to_dict()
    assert config.accumulator_range == (-5, 255 * 18 + 5)


@pytest.mark.parametrize("changes, message", [
    ({"height": 7}, r"height must be even .* 3\.\.4096, not 7"),
    ({"height": 2}, r"height must be an integer in 3\.\.4096, not 2"),
    ({"width": 0}, r"width must be an integer in 3\.\.4096, not 0"),
    ({"width": 5000}, r"width must be an integer in 3\.\.4096, not 5000"),
    ({"height": 8.0}, r"height must be an integer .* not 8\.0"),
    ({"channels_in": 0}, r"channels_in must be an integer in 1\.\.1024, not 0"),
    ({"channels_out": -1}, r"channels_out must be an integer in 1\.\.1024, not -1"),
    ({"kernel_size": 4}, r"kernel_size must be one of 1, 3, 5, 7, not 4"),
    ({"kernel_size": 9, "height": 10, "width": 10},
     r"kernel_size must be one of 1, 3, 5, 7, not 9"),
    ({"kernel_size": 7}, r"width must be an integer in 7\.\.4096, not 6"),
    ({"threshold": 256}, r"threshold must be an integer in 0\.\.255, not 256"),
    ({"threshold": -1}, r"threshold must be an integer in 0\.\.255, not -1"),
    ({"threshold": True}, r"threshold must be an integer in 0\.\.255, not True"),
    ({"shift": 32}, r"shift must be an integer in 0\.\.31, not 32"),
    ({"mode": "sparse"}, r"mode must be \"event\" or \"dense\", not 'sparse'"),
    ({"weights": np.full((3, 2, 3, 3), 128).tolist()},
     r"weights\[0\]\[0\]\[0\]\[0\] must be an integer in -128\.\.127, not 128"),
    ({"weights": np.ones((3, 2, 3, 2), int).tolist()},
     r"weights must be nested lists shaped \[3, 2, 3, 3\], not \[3, 2, 3, 2\]"),
    ({"weights": [[[[1.5]]]]}, r"weights must be nested lists shaped \[3, 2, 3, 3\]"),
    ({"bias": [0, 0]}, r"bias must be nested lists shaped \[3\], not \[2\]"),
    ({"bias": [0, 2**31, 0]}, r"bias\[1\] must be an integer in -2147483648\.\.2147483647"),
    ({"bias": [0, "1", 0]}, r"bias\[1\] must be an integer"),
    ({"pixels_per_cycle": 3}, r"pixels_per_cycle must be one of 1, 2, 4, 8, not 3"),
    ({"pixels_per_cycle": 8, "channels_in": 1, "weights": np.ones((3, 1, 3, 3)).astype(int)
      .tolist(), "width": 6},
     r"pixels_per_cycle must divide width \* channels_in = 6, not 8"),
    ({"lanes": 2}, r"lanes must divide channels_out = 3, not 2"),
    ({"lanes": 4}, r"lanes must be an integer in 1\.\.3, not 4"),
    ({"colour": 1}, r"unknown field 'colour'; allowed fields: height, width"),
    ({"weights": None}, r"missing field 'weights'"),
])
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(base(**changes))


def test_config_must_be_an_object():
    with pytest.raises(ConfigError, match="configuration must be a JSON object, not list"):
        Config.from_dict([1, 2])


def test_bad_json_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{ nope")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        Config.from_json(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_json(tmp_path / "missing.json")


def test_optional_fields_default():
    obj = base(bias=None, threshold=None, shift=None, mode=None)
    config = Config.from_dict(obj)
    assert (config.threshold, config.shift, config.mode) == (0, 0, "event")
    assert config.bias.tolist() == [0, 0, 0]
    assert (config.pixels_per_cycle, config.lanes) == (1, 1)


def test_accumulator_width_holds_extremes():
    w = np.full((2, 3, 7, 7), -128)
    w[1] = 127
    config = Config.from_dict(base(height=8, width=8, channels_in=3, channels_out=2,
                                   kernel_size=7, weights=w.tolist(),
                                   bias=[-(2**31), 2**31 - 1]))
    lo, hi = config.accumulator_range
    assert lo == -(2**31) - 255 * 128 * 3 * 49 and hi == 2**31 - 1 + 255 * 127 * 3 * 49
    width = config.accumulator_width
    assert -(1 << (width - 1)) <= lo and hi < 1 << (width - 1)
    assert not (-(1 << (width - 2)) <= lo and hi < 1 << (width - 2))


@pytest.mark.parametrize("frames, message", [
    (np.zeros((2, 2, 8, 6), np.int16), r"frames must have dtype uint8 \(0\.\.255\), not int16"),
    (np.zeros((2, 2, 8, 6), np.float32), r"dtype uint8"),
    (np.zeros((2, 8, 6), np.uint8), r"shape \(T, Cin, H, W\) = \(T, 2, 8, 6\), not \(2, 8, 6\)"),
    (np.zeros((2, 2, 6, 8), np.uint8), r"not \(2, 2, 6, 8\)"),
    (np.zeros((0, 2, 8, 6), np.uint8), r"at least one frame"),
])
def test_bad_frames_are_refused(frames, message):
    config = Config.from_dict(base())
    with pytest.raises(ConfigError, match=message):
        config.check_frames(frames)


def test_single_channel_frames_are_three_dimensional():
    config = Config.from_dict(base(channels_in=1, weights=np.ones((3, 1, 3, 3), int).tolist()))
    assert config.check_frames(np.zeros((4, 8, 6), np.uint8)).shape == (4, 1, 8, 6)
    with pytest.raises(ConfigError, match=r"shape \(T, H, W\) = \(T, 8, 6\), not \(4, 1, 8, 6\)"):
        config.check_frames(np.zeros((4, 1, 8, 6), np.uint8))
