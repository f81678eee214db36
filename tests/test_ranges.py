"""The range checks every constructor shares: the message names the parameter, the value and
the allowed range; a value of the wrong type is both a ConfigError and a TypeError."""

import numpy as np
import pytest

from eventconv.core import ranges
from eventconv.core.ranges import ConfigError, ConfigTypeError


@pytest.mark.parametrize("call, error, message", [
    (lambda: ranges.integer("shift", 32, 0, 31), ConfigError,
     r"^shift must be an integer in 0\.\.31, not 32$"),
    (lambda: ranges.integer("shift", True, 0, 31), ConfigTypeError,
     r"^shift must be an integer in 0\.\.31, not True$"),
    (lambda: ranges.integer("shift", 2.0, 0, 31), ConfigTypeError,
     r"^shift must be an integer in 0\.\.31, not 2\.0$"),
    (lambda: ranges.one_of("kernel_size", 4, ranges.KERNEL_SIZES), ConfigError,
     r"^kernel_size must be one of 1, 3, 5, 7, not 4$"),
    (lambda: ranges.boolean("dense", 1), ConfigTypeError,
     r"^dense must be a bool \(True or False\), not 1$"),
    (lambda: ranges.frame_side("height", 7, 3), ConfigError,
     r"^height must be even \(2 x 2 pooling\) and in 3\.\.4096, not 7$"),
    (lambda: ranges.frame_side("width", 2, 5), ConfigError,
     r"^width must be an integer in 5\.\.4096, not 2$"),
    (lambda: ranges.lanes_divide("lanes", 3, 8), ConfigError,
     r"^lanes must divide channels_out = 8, not 3$"),
    (lambda: ranges.pixels_per_cycle("pixels_per_cycle", 4, 6), ConfigError,
     r"^pixels_per_cycle must divide width \* channels_in = 6, not 4$"),
    (lambda: ranges.integer_array("bias", [1, 2], (3,), 0, 9), ConfigError,
     r"^bias must be nested lists shaped \[3\], not \[2\]$"),
    (lambda: ranges.integer_array("weights", [[1, 200]], (1, 2), -128, 127), ConfigError,
     r"^weights\[0\]\[1\] must be an integer in -128\.\.127, not 200$"),
    (lambda: ranges.geometry(height=8, width=8, channels_in=1, channels_out=0, kernel_size=3,
                             lanes=1), ConfigError,
     r"^channels_out must be an integer in 1\.\.1024, not 0$"),
])
def test_bad_values_name_parameter_value_and_range(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_type_errors_are_type_errors_and_config_errors():
    # Block constructors promise TypeError for a wrong type; the CLI catches ConfigError.
    assert issubclass(ConfigTypeError, TypeError) and issubclass(ConfigTypeError, ConfigError)
    assert issubclass(ConfigError, ValueError)


def test_good_values_come_back_as_python_ints():
    assert ranges.integer("x", np.int16(5), 0, 9) == 5
    assert type(ranges.integer("x", np.int16(5), 0, 9)) is int
    assert ranges.frame_side("height", 48, 3) == 48
    assert ranges.integer_array("w", [[1, -2]], (1, 2), -8, 7).dtype == np.int64
