"""Real trained networks bundled with eventconv, and the script that made them.

``pnet_64x48``: the first four layers of MTCNN's PNet (face proposal network) as trained by
facenet-pytorch (MIT licence, ``sw/core/data/LICENSE.pnet``), quantized to int8 for the
bundled 64 x 48 clip: conv1 3x3 (10 channels, 2 x 2 max pool), conv2 3x3 (16), conv3 3x3 (32),
conv4_1 1x1 (2: face / not face), each with its bias. Differences from PNet, where eventconv's
layer is not PNet's: ReLU instead of PReLU; "same" zero padding instead of none; one grey input
channel (conv1's weights summed over R, G, B: exact for a grey picture given as RGB); PNet's
input normalisation ``(x - 127.5) / 128`` folded into conv1's bias (exact but at the borders,
where the padding is 0 in pixels, not in normalised values).

Quantization: per layer, int8 weights scaled by ``max |w| / 127``, the bias in accumulator
units, and a power-of-two ``shift`` chosen on the bundled clip (every frame, dense) so that
99.9 % of the ReLU outputs fit in uint8 unclipped.

Regenerate (needs only numpy; the wheel ships ``facenet_pytorch/data/pnet.pt``)::

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fp && cd /tmp/fp
    unzip -o facenet_pytorch-2.6.0-py3-none-any.whl facenet_pytorch/data/pnet.pt
    python -m eventconv.core.nets /tmp/fp/facenet_pytorch/data/pnet.pt
"""

import collections
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

from eventconv.core.clip import DATA, load_clip
from eventconv.core.model import NetworkModel
from eventconv.core.network import Network

__all__ = ["load_net", "read_torch_legacy", "quantize_pnet", "NETS"]

NETS = {"pnet_64x48": "pnet_64x48.json"}
# PNet's layers as eventconv layers: (weights, bias, kernel, pool).
PNET_LAYERS = (("conv1", 2), ("conv2", 1), ("conv3", 1), ("conv4_1", 1))
# A pixel x is PNet's (x - 127.5) / 128.
PNET_INPUT_SCALE, PNET_INPUT_OFFSET = 1 / 128, 127.5 / 128
CLIPPED_FRACTION = 0.001
INPUT_THRESHOLD = 8


def load_net(name="pnet_64x48"):
    """A bundled network as a :class:`~eventconv.core.network.Network`."""
    return Network.from_json(DATA / NETS[name])


class _LegacyUnpickler(pickle.Unpickler):
    """torch's legacy serialization without torch: tensors as (storage key, offset, size,
    stride), storages recorded by key."""

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *_: (storage, offset, size, stride)
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the file")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _size, _view = pid
        self.storages[key] = storage_type
        return key


_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64}


def read_torch_legacy(path):
    """The state dict of a legacy-format ``torch.save`` file: name -> float64 array."""
    with open(path, "rb") as f:
        for _ in range(3):             # magic number, protocol version, system info
            pickle.load(f)
        unpickler = _LegacyUnpickler(f)
        state = unpickler.load()
        data = {}
        for key in pickle.load(f):
            count = struct.unpack("<q", f.read(8))[0]
            dtype = np.dtype(_DTYPES[unpickler.storages[key]])
            data[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    out = {}
    for name, (key, offset, size, stride) in state.items():
        flat = data[key]
        strides = [s * flat.itemsize for s in stride]
        out[name] = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                                    strides=strides).astype(np.float64)
    return out


def _calibrated_shift(acc):
    """The smallest shift that leaves 99.9 % of the ReLU outputs below 256."""
    top = np.quantile(np.maximum(acc, 0), 1 - CLIPPED_FRACTION)
    shift = 0
    while top / 2**shift > 255 and shift < 31:
        shift += 1
    return shift


def quantize_pnet(state, frames):
    """PNet's first four layers as a network object for ``frames`` (T, H, W)."""
    _, height, width = frames.shape
    obj = {"height": height, "width": width, "channels_in": 1, "threshold": INPUT_THRESHOLD,
           "mode": "event", "layers": []}
    scale = PNET_INPUT_SCALE            # real value of one unit of the layer's input
    for index, (name, pool) in enumerate(PNET_LAYERS):
        w, b = state[f"{name}.weight"], state[f"{name}.bias"]
        if index == 0:
            w = w.sum(axis=1, keepdims=True)            # grey: R = G = B
        w_scale = np.abs(w).max() / 127
        weights = np.round(w / w_scale).astype(int)
        if index == 0:
            b = b - PNET_INPUT_OFFSET * (weights * w_scale).sum(axis=(1, 2, 3))
        bias = np.round(b / (w_scale * scale)).astype(int)
        layer = {"channels_out": int(w.shape[0]), "kernel_size": int(w.shape[2]),
                 "weights": weights.tolist(), "bias": bias.tolist(), "shift": 0,
                 "pool": pool, "output_threshold": 0}
        obj["layers"].append(layer)
        layer["shift"] = _calibrated_shift(_accumulators(obj, frames))
        scale *= w_scale * 2 ** layer["shift"]
    return obj


def _accumulators(obj, frames):
    """The last layer's accumulators over ``frames`` (dense: their exact values)."""
    model = NetworkModel(Network.from_dict({**obj, "mode": "dense"}))
    out = []
    for frame in frames:
        model.step(frame[None])
        out.append(model.layers[-1].acc.copy())
    return np.stack(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m eventconv.core.nets PATH/TO/pnet.pt")
    obj = quantize_pnet(read_torch_legacy(argv[0]), load_clip("vtest_64x48"))
    path = Path(DATA) / NETS["pnet_64x48"]
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    print(f"{path}: " + ", ".join(f"{layer['channels_out']}x{layer['kernel_size']}x"
                                  f"{layer['kernel_size']} shift {layer['shift']}"
                                  for layer in obj["layers"]))


if __name__ == "__main__":
    main()
