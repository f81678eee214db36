"""Layer configuration: the contract's JSON object (``SPEC.md`` beside this file), validated
once, shared by model, RTL and CLI.

Every check names the field, the value and the allowed range, so the CLI can print the message
as its one line and exit 2.
"""

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from eventconv.core import ranges
from eventconv.core.ranges import BIAS_MAX, BIAS_MIN, MAX_CHANNELS, ConfigError, ConfigTypeError

__all__ = ["Config", "EventsConfig", "checked_config", "read_json", "REQUIRED", "OPTIONAL",
           "EVENTS_FIELDS", "EVENT_CHANNELS"]

REQUIRED = ("height", "width", "channels_in", "channels_out", "kernel_size", "weights")
OPTIONAL = {"bias": None, "threshold": 0, "shift": 0, "mode": "event", "pool": 2,
            "output_threshold": 0, "pixels_per_cycle": 1, "lanes": 1}
POOLS = (1, 2)


@dataclass(frozen=True, eq=False)
class Config:
    """One layer: conv K x K (stride 1, zero padding K//2), requantize, 2 x 2 max pool (or
    none, ``pool`` 1), sparse output above ``output_threshold``.

    Fields as in ``SPEC.md``; ``pixels_per_cycle`` and ``lanes`` are hardware-only knobs that
    change cycles and resources, never results. A layer of a network
    (:class:`eventconv.core.network.Network`) is a Config too, its size and input channels
    derived from the layer before.
    """

    height: int
    width: int
    channels_in: int
    channels_out: int
    kernel_size: int
    weights: np.ndarray          # int64 [Cout, Cin, K, K], values in -128..127
    bias: np.ndarray             # int64 [Cout]
    threshold: int = 0
    shift: int = 0
    mode: str = "event"
    pool: int = 2
    output_threshold: int = 0
    pixels_per_cycle: int = 1
    lanes: int = 1
    extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, obj):
        if not isinstance(obj, dict):
            raise ConfigError(f"configuration must be a JSON object, not {type(obj).__name__}")
        allowed = REQUIRED + tuple(OPTIONAL)
        for key in obj:
            if key not in allowed:
                raise ConfigError(f"unknown field {key!r}; allowed fields: {', '.join(allowed)}")
        for key in REQUIRED:
            if key not in obj:
                raise ConfigError(f"missing field {key!r}")
        k = ranges.one_of("kernel_size", obj["kernel_size"], ranges.KERNEL_SIZES)
        pool = ranges.one_of("pool", obj.get("pool", 2), POOLS)
        height = ranges.frame_side("height", obj["height"], k, pooled=pool == 2)
        width = ranges.frame_side("width", obj["width"], k, pooled=pool == 2)
        cin = ranges.integer("channels_in", obj["channels_in"], 1, MAX_CHANNELS)
        cout = ranges.integer("channels_out", obj["channels_out"], 1, MAX_CHANNELS)
        weights = ranges.integer_array("weights", obj["weights"], (cout, cin, k, k), -128, 127)
        bias = obj.get("bias")
        bias = (np.zeros(cout, dtype=np.int64) if bias is None
                else ranges.integer_array("bias", bias, (cout,), BIAS_MIN, BIAS_MAX))
        threshold = ranges.integer("threshold", obj.get("threshold", 0), 0, 255)
        shift = ranges.integer("shift", obj.get("shift", 0), 0, 31)
        output_threshold = ranges.integer("output_threshold", obj.get("output_threshold", 0),
                                          0, 255)
        mode = obj.get("mode", "event")
        if mode not in ("event", "dense"):
            raise ConfigError(f"mode must be \"event\" or \"dense\", not {mode!r}")
        ppc = ranges.pixels_per_cycle("pixels_per_cycle", obj.get("pixels_per_cycle", 1),
                                      width * cin)
        lanes = ranges.lanes_divide("lanes", obj.get("lanes", 1), cout)
        return cls(height=height, width=width, channels_in=cin,
                   channels_out=cout, kernel_size=k, weights=weights, bias=bias,
                   threshold=threshold, shift=shift, mode=mode, pool=pool,
                   output_threshold=output_threshold, pixels_per_cycle=ppc, lanes=lanes)

    @classmethod
    def from_json(cls, path):
        return cls.from_dict(read_json(path))

    def to_dict(self):
        return {"height": self.height, "width": self.width, "channels_in": self.channels_in,
                "channels_out": self.channels_out, "kernel_size": self.kernel_size,
                "weights": self.weights.tolist(), "bias": self.bias.tolist(),
                "threshold": self.threshold, "shift": self.shift, "mode": self.mode,
                "pool": self.pool, "output_threshold": self.output_threshold,
                "pixels_per_cycle": self.pixels_per_cycle, "lanes": self.lanes}

    def replace(self, **changes):
        return Config.from_dict({**self.to_dict(), **changes})

    @property
    def output_shape(self):
        """(Cout, H', W') of the map the layer emits: the frame size divided by ``pool``."""
        return (self.channels_out, self.height // self.pool, self.width // self.pool)

    @property
    def pad(self):
        return self.kernel_size // 2

    @property
    def accumulator_range(self):
        """(lo, hi): every value an accumulator can hold, at any moment, for any input.

        While a frame is being accumulated each accumulator equals bias + the correlation of
        some uint8 image with the weights (each pixel either its old or new reference), so
        these exact bounds hold throughout, not only at frame ends.
        """
        w = self.weights.reshape(self.channels_out, -1)
        lo = self.bias + 255 * np.where(w < 0, w, 0).sum(axis=1)
        hi = self.bias + 255 * np.where(w > 0, w, 0).sum(axis=1)
        return int(lo.min()), int(hi.max())

    @property
    def accumulator_width(self):
        """Signed bit width that holds :attr:`accumulator_range` (two's complement)."""
        lo, hi = self.accumulator_range
        width = 1
        while not (-(1 << (width - 1)) <= lo and hi < (1 << (width - 1))):
            width += 1
        return width

    def frames_shape(self, count):
        if self.channels_in == 1:
            return (count, self.height, self.width)
        return (count, self.channels_in, self.height, self.width)

    def check_frames(self, frames):
        """Validate a frame array (SPEC: uint8 (T,H,W) if Cin == 1 else (T,Cin,H,W)).

        Returns the frames as (T, Cin, H, W).
        """
        if not isinstance(frames, np.ndarray):
            raise ConfigError(f"frames must be a numpy array, not {type(frames).__name__}")
        want = self.frames_shape(0)[1:]
        layout = "(T, H, W)" if self.channels_in == 1 else "(T, Cin, H, W)"
        if frames.dtype != np.uint8:
            raise ConfigError(f"frames must have dtype uint8 (0..255), not {frames.dtype}")
        if frames.ndim != len(want) + 1 or frames.shape[1:] != want:
            raise ConfigError(f"frames must have shape {layout} = (T, "
                              f"{', '.join(map(str, want))}), not {tuple(frames.shape)}")
        if frames.shape[0] < 1:
            raise ConfigError("frames must hold at least one frame (T >= 1), not T = 0")
        return frames.reshape(frames.shape[0], self.channels_in, self.height, self.width)


#: Fields of the ``events`` object, and the input channels an event-camera recording fills.
EVENTS_FIELDS = ("window_us", "step", "downsample")
EVENT_CHANNELS = (1, 2)
MAX_STEP, MAX_DOWNSAMPLE = 255, 64


@dataclass(frozen=True)
class EventsConfig:
    """The config's ``events`` object: how an event-camera recording becomes frames
    (``SPEC.md``, "Event-camera input").

    Window k holds the events with ``t0 + k * window_us <= t < t0 + (k + 1) * window_us``
    (t0: the first event's time); an event ``(x, y)`` counts on pixel
    ``(y // downsample, x // downsample)``; a frame sample is ``min(255, step * count)``.
    """

    window_us: int
    step: int = 1
    downsample: int = 1

    @classmethod
    def from_dict(cls, obj):
        if not isinstance(obj, dict):
            raise ConfigError(f"events must be a JSON object with {', '.join(EVENTS_FIELDS)}, "
                              f"not {type(obj).__name__}")
        for key in obj:
            if key not in EVENTS_FIELDS:
                raise ConfigError(f"unknown field 'events.{key}'; allowed fields: "
                                  f"{', '.join(EVENTS_FIELDS)}")
        if "window_us" not in obj:
            raise ConfigError("missing field 'events.window_us'")
        return cls(window_us=ranges.at_least("events.window_us", obj["window_us"], 1),
                   step=ranges.integer("events.step", obj.get("step", 1), 1, MAX_STEP),
                   downsample=ranges.integer("events.downsample", obj.get("downsample", 1),
                                             1, MAX_DOWNSAMPLE))

    def to_dict(self):
        return {"window_us": self.window_us, "step": self.step, "downsample": self.downsample}


def read_json(path):
    """The JSON value in the file ``path``, or a ConfigError naming the file and the fault."""
    def unique_keys(pairs):
        value = dict(pairs)
        if len(value) < len(pairs):
            # json would keep the last silently: a copy-paste slip would go unnoticed.
            twice = next(key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i]))
            raise ConfigError(f"config: {path}: the field {twice!r} is given twice")
        return value

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=unique_keys)
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: {path} is not valid JSON ({e})") from None
    except RecursionError:
        raise ConfigError(f"config: {path} is not valid JSON (nested too deeply)") from None


def read_npy(path, option):
    """The one array in the ``.npy`` file ``path``, or a ConfigError naming ``option`` (the
    command-line option that gave it), the file and the fault."""
    try:
        _check_npy_size(path, option)
        array = np.load(path, allow_pickle=False)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"{option}: no such file: {path}") from None
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{option}: {path} is not a .npy array file ({e})") from None
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"{option}: {path} holds several arrays; give one .npy array")
    return array


def _check_npy_size(path, option):
    """Refuse a ``.npy`` whose header promises more data than the file holds (numpy would
    first try to allocate it all: a 1.5 TiB header is one MemoryError). Headers numpy cannot
    read are left to np.load, which names the fault."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return
            shape, _, dtype = read_header(f)
        except ValueError:
            return
        held = os.fstat(f.fileno()).st_size - f.tell()
    if dtype.hasobject:
        return
    promised = math.prod(shape) * dtype.itemsize
    if promised > held:
        raise ConfigError(f"{option}: {path} is truncated: its header says {dtype} "
                          f"{tuple(shape)} ({promised} bytes), the file holds {held}")


def checked_config(config):
    """``config`` if it is a :class:`Config`, else a TypeError naming the parameter."""
    if not isinstance(config, Config):
        raise ConfigTypeError(f"config must be an eventconv.core.config.Config, not {config!r}")
    return config
