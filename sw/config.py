"""Layer configuration: SPEC.md's JSON object, validated once, shared by model, RTL and CLI.

Every check names the field, the value and the allowed range, so the CLI can print the message
as its one line and exit 2.
"""

import json
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConfigError", "Config", "KERNEL_SIZES", "PIXELS_PER_CYCLE", "BIAS_MIN", "BIAS_MAX"]

KERNEL_SIZES = (1, 3, 5, 7)
PIXELS_PER_CYCLE = (1, 2, 4, 8)
MAX_FRAME_SIDE = 4096
MAX_CHANNELS = 1024
# Bias is an int32 in accumulator units, as in TFLite / CMSIS-NN; the accumulator is then sized
# so that bias plus any correlation of uint8 pixels fits.
BIAS_MIN, BIAS_MAX = -(2**31), 2**31 - 1

REQUIRED = ("height", "width", "channels_in", "channels_out", "kernel_size", "weights")
OPTIONAL = {"bias": None, "threshold": 0, "shift": 0, "mode": "event",
            "pixels_per_cycle": 1, "lanes": 1}


class ConfigError(ValueError):
    """A configuration field (or the frames given to it) is outside its allowed range."""


def _int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


def _int_array(name, value, shape, lo, hi):
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        arr = None
    if arr is None or arr.shape != shape:
        got = "ragged" if arr is None else list(arr.shape)
        raise ConfigError(f"{name} must be nested lists shaped {list(shape)}, not {got}")
    for index, item in np.ndenumerate(arr):
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or \
                not lo <= item <= hi:
            where = "".join(f"[{i}]" for i in index)
            raise ConfigError(f"{name}{where} must be an integer in {lo}..{hi}, not {item!r}")
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Config:
    """One layer: conv K x K (stride 1, zero padding K//2), requantize, 2 x 2 max pool.

    Fields as in SPEC.md; ``pixels_per_cycle`` and ``lanes`` are hardware-only knobs that change
    cycles and resources, never results.
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
        k = obj["kernel_size"]
        if isinstance(k, bool) or k not in KERNEL_SIZES:
            raise ConfigError(f"kernel_size must be one of 1, 3, 5, 7, not {k!r}")
        k = int(k)
        sizes = {}
        for name in ("height", "width"):
            value = _int(name, obj[name], k if k > 1 else 2, MAX_FRAME_SIDE)
            if value % 2:
                raise ConfigError(f"{name} must be even (2 x 2 pooling) and in "
                                  f"{max(k, 2)}..{MAX_FRAME_SIDE}, not {value}")
            sizes[name] = value
        cin = _int("channels_in", obj["channels_in"], 1, MAX_CHANNELS)
        cout = _int("channels_out", obj["channels_out"], 1, MAX_CHANNELS)
        weights = _int_array("weights", obj["weights"], (cout, cin, k, k), -128, 127)
        bias = obj.get("bias")
        bias = (np.zeros(cout, dtype=np.int64) if bias is None
                else _int_array("bias", bias, (cout,), BIAS_MIN, BIAS_MAX))
        threshold = _int("threshold", obj.get("threshold", 0), 0, 255)
        shift = _int("shift", obj.get("shift", 0), 0, 31)
        mode = obj.get("mode", "event")
        if mode not in ("event", "dense"):
            raise ConfigError(f"mode must be \"event\" or \"dense\", not {mode!r}")
        ppc = obj.get("pixels_per_cycle", 1)
        if isinstance(ppc, bool) or ppc not in PIXELS_PER_CYCLE:
            raise ConfigError(f"pixels_per_cycle must be one of 1, 2, 4, 8, not {ppc!r}")
        if (sizes["width"] * cin) % ppc:
            raise ConfigError(f"pixels_per_cycle must divide width * channels_in "
                              f"= {sizes['width'] * cin}, not {ppc}")
        lanes = _int("lanes", obj.get("lanes", 1), 1, cout)
        if cout % lanes:
            raise ConfigError(f"lanes must divide channels_out = {cout}, not {lanes}")
        return cls(height=sizes["height"], width=sizes["width"], channels_in=cin,
                   channels_out=cout, kernel_size=k, weights=weights, bias=bias,
                   threshold=threshold, shift=shift, mode=mode, pixels_per_cycle=int(ppc),
                   lanes=lanes)

    @classmethod
    def from_json(cls, path):
        try:
            with open(path) as f:
                obj = json.load(f)
        except OSError as e:
            raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: {path} is not valid JSON ({e})") from None
        return cls.from_dict(obj)

    def to_dict(self):
        return {"height": self.height, "width": self.width, "channels_in": self.channels_in,
                "channels_out": self.channels_out, "kernel_size": self.kernel_size,
                "weights": self.weights.tolist(), "bias": self.bias.tolist(),
                "threshold": self.threshold, "shift": self.shift, "mode": self.mode,
                "pixels_per_cycle": self.pixels_per_cycle, "lanes": self.lanes}

    def replace(self, **changes):
        return Config.from_dict({**self.to_dict(), **changes})

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
