"""``python -m eventconv.bench.soak``: many frames of the real clip through the simulated engine
(Verilator), under random input idle cycles and output backpressure, every result compared
with the golden model; prints the mismatch count (the target is 0) and exits 1 on any.

The clip (60 frames) is played forwards and backwards in turn, from a random first frame, so
the engine sees ordinary motion and, at each turn, a frame that jumps. Each chunk starts from
reset, as its model run does; chunks vary the seed of the stall pattern.
"""

import argparse
import sys
import time

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.bench.network import network_config
from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import run_model
from eventconv.hw.boards import BOARDS, default_config

__all__ = ["soak_frames", "soak"]

CHUNK = 500


def soak_frames(clip, count, rng):
    """``count`` frames of ``clip`` played forwards and backwards, from a random start."""
    loop = np.concatenate([clip, clip[::-1]])
    start = int(rng.integers(len(loop)))
    return np.resize(np.roll(loop, -start, axis=0), (count, *clip.shape[1:]))


def soak(config, count, *, idle=0.3, stall=0.3, seed=0, simulator="verilator", log=print):
    """Run ``count`` frames in chunks of :data:`CHUNK`; returns the frames that mismatched."""
    rng = np.random.default_rng(seed)
    clip = load_clip("vtest_64x48")
    mismatched = 0
    for chunk, done in enumerate(range(0, count, CHUNK)):
        frames = soak_frames(clip, min(CHUNK, count - done), rng)
        start = time.monotonic()
        rtl = rtl_backend.run(config, frames, simulator=simulator, idle=idle, stall=stall,
                              seed=seed * 1000 + chunk)
        model = run_model(config, frames)
        bad = np.zeros(len(frames), bool)
        for key in model:
            differs = rtl[key] != model[key]
            bad |= differs.reshape(len(frames), -1).any(axis=1)
        mismatched += int(bad.sum())
        log(f"soak: frames {done}..{done + len(frames) - 1}: {int(bad.sum())} mismatched "
            f"({time.monotonic() - start:.0f} s)")
    return mismatched


def design(name):
    """The bundled network, or a board's default layer at the clip's size (64x48)."""
    if name == "network":
        return network_config(threshold=8)
    height, width = load_clip("vtest_64x48").shape[1:]
    return Config.from_dict({**default_config(name).to_dict(), "height": height,
                             "width": width})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.bench.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--design", default="network", choices=("network", *BOARDS),
                        help="network: the bundled 4-layer PNet (default); a board: its "
                             "default layer at the clip's size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    mismatched = soak(design(args.design), args.frames, seed=args.seed)
    print(f"soak: {args.frames} frames of the real clip through {args.design}, random idle "
          f"and backpressure (0.3): {mismatched} mismatched")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
