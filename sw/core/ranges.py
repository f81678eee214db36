"""Every range check of the project, written once: the configuration and every block
constructor use these, so a bad value gets the same message (name, value, allowed range)
wherever it is caught.

Errors are :class:`ConfigError` (a ``ValueError``); a value of the wrong type raises
:class:`ConfigTypeError`, which is also a ``TypeError``.
"""

import numbers
import re

import numpy as np

__all__ = ["ConfigError", "ConfigTypeError", "KERNEL_SIZES", "PIXELS_PER_CYCLE",
           "MAX_FRAME_SIDE", "MAX_CHANNELS", "BIAS_MIN", "BIAS_MAX", "integer", "one_of",
           "boolean", "frame_side", "geometry", "lanes_divide", "pixels_per_cycle",
           "integer_array", "at_least", "verilog_name"]

KERNEL_SIZES = (1, 3, 5, 7)
PIXELS_PER_CYCLE = (1, 2, 4, 8)
MAX_FRAME_SIDE = 4096
MAX_CHANNELS = 1024
# Bias is an int32 in accumulator units, as in TFLite / CMSIS-NN; the accumulator is then sized
# so that bias plus any correlation of uint8 pixels fits.
BIAS_MIN, BIAS_MAX = -(2**31), 2**31 - 1


class ConfigError(ValueError):
    """A configuration field, a block parameter, or the frames given is out of its range."""


class ConfigTypeError(ConfigError, TypeError):
    """A configuration field or block parameter has the wrong type."""


def _is_integer(value):
    return not isinstance(value, bool) and isinstance(value, (numbers.Integral, np.integer))


def integer(name, value, lo, hi):
    """``value`` as an int if it is an integer in ``lo..hi``, else raise naming ``name``."""
    if not _is_integer(value):
        raise ConfigTypeError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


def at_least(name, value, lo):
    """``value`` as an int if it is an integer of at least ``lo`` (no upper bound), else raise
    naming ``name``."""
    if not _is_integer(value):
        raise ConfigTypeError(f"{name} must be an integer >= {lo}, not {value!r}")
    if value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


def one_of(name, value, allowed):
    """``value`` if it is one of ``allowed`` (integers), else raise naming ``name``."""
    if not _is_integer(value) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, "
                          f"not {value!r}")
    return int(value)


# Verilog-2005 simple identifiers; a reserved word would not compile either.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}")
_VERILOG_WORDS = frozenset(
    "always and assign begin buf case default else end endcase endmodule for function if "
    "initial inout input integer module negedge or output parameter posedge reg wire "
    "not nor nand xor xnor signed task endtask endfunction generate endgenerate".split())


def verilog_name(name, value):
    """``value`` if it is a Verilog identifier (a module name), else raise naming ``name``."""
    if (not isinstance(value, str) or not _IDENTIFIER.fullmatch(value)
            or value in _VERILOG_WORDS):
        raise ConfigError(f"{name} must be a Verilog identifier (a letter or _, then up to "
                          f"127 letters, digits, _ or $; not a keyword), not {value!r}")
    return value


def boolean(name, value):
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{name} must be a bool (True or False), not {value!r}")
    return value


def frame_side(name, value, kernel_size=1, *, pooled=True):
    """A frame height or width: at least the kernel; where it is pooled by 2 x 2, even and at
    least 2."""
    low = max(kernel_size, 2) if pooled else kernel_size
    value = integer(name, value, low, MAX_FRAME_SIDE)
    if pooled and value % 2:
        raise ConfigError(f"{name} must be even (2 x 2 pooling) and in "
                          f"{low}..{MAX_FRAME_SIDE}, not {value}")
    return value


def geometry(*, height, width, channels_in, channels_out, kernel_size, lanes):
    """The shape of a layer, as the fan-out and the accumulator unit need it (no weights)."""
    kernel_size = one_of("kernel_size", kernel_size, KERNEL_SIZES)
    frame_side("height", height, kernel_size)
    frame_side("width", width, kernel_size)
    integer("channels_in", channels_in, 1, MAX_CHANNELS)
    integer("channels_out", channels_out, 1, MAX_CHANNELS)
    lanes_divide("lanes", lanes, channels_out)


def lanes_divide(name, lanes, channels_out):
    lanes = integer(name, lanes, 1, channels_out)
    if channels_out % lanes:
        raise ConfigError(f"{name} must divide channels_out = {channels_out}, not {lanes}")
    return lanes


def pixels_per_cycle(name, value, samples_per_row, what="width * channels_in"):
    """Samples per input beat: one of :data:`PIXELS_PER_CYCLE`, dividing a row's samples
    (so a beat never spans two rows)."""
    value = one_of(name, value, PIXELS_PER_CYCLE)
    if samples_per_row % value:
        raise ConfigError(f"{name} must divide {what} = {samples_per_row}, not {value}")
    return value


def integer_array(name, value, shape, lo, hi):
    """Nested lists (or an array) of integers in ``lo..hi`` shaped ``shape``, as int64."""
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        arr = None
    if arr is None or arr.shape != shape:
        got = "ragged" if arr is None else list(arr.shape)
        raise ConfigError(f"{name} must be nested lists shaped {list(shape)}, not {got}")
    for index, item in np.ndenumerate(arr):
        if not _is_integer(item) or not lo <= item <= hi:
            where = "".join(f"[{i}]" for i in index)
            raise ConfigError(f"{name}{where} must be an integer in {lo}..{hi}, not {item!r}")
    return arr.astype(np.int64)
