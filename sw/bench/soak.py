"""``python -m eventconv.bench.soak``: many frames of the real clip through the simulated engine
(Verilator), under random input idle cycles and output backpressure, every result compared
with the golden model; prints the mismatch count (the target is 0) and exits 1 on any.

The clip (60 frames) is played forwards and backwards in turn, from a random first frame, so
the engine sees ordinary motion and, at each turn, a frame that jumps. Each chunk starts from
reset, as its model run does; chunks vary the seed of the stall pattern. The chunks are tasks
on ``dask.distributed`` (a LocalCluster of single-threaded worker processes here, or a running
scheduler's), so a soak of hours uses every core or a cluster.
"""

import argparse
import sys
import time

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.bench.cluster import dask_client
from eventconv.bench.network import network_config
from eventconv.core.clip import load_clip, played_back_and_forth
from eventconv.core.config import Config
from eventconv.core.model import run_model
from eventconv.hw.boards import BOARDS, default_config

__all__ = ["soak_frames", "soak"]

CHUNK = 500


def soak_frames(clip, count, rng):
    """``count`` frames of ``clip`` played forwards and backwards, from a random start."""
    return played_back_and_forth(clip, count, int(rng.integers(2 * len(clip))))


def mismatched_frames(result, model, count):
    """A bool per frame: some array of ``result`` differs from ``model``'s in that frame."""
    bad = np.zeros(count, bool)
    for key in model:
        if key not in result or result[key].shape != model[key].shape:
            return np.ones(count, bool)
        bad |= (result[key] != model[key]).reshape(count, -1).any(axis=1)
    return bad


def soak_chunk(config, frames, *, idle, stall, seed, simulator):
    """One task: ``frames`` through the simulated engine from reset and through the model;
    returns ``(frames that mismatched, seconds)``."""
    start = time.monotonic()
    rtl = rtl_backend.run(config, frames, simulator=simulator, idle=idle, stall=stall,
                          seed=seed)
    bad = mismatched_frames(rtl, run_model(config, frames), len(frames))
    return int(bad.sum()), time.monotonic() - start


def soak(config, count, *, idle=0.3, stall=0.3, seed=0, simulator="verilator", chunk=CHUNK,
         workers=2, scheduler=None, clip=None, log=print):
    """Run ``count`` frames of ``clip`` (None: the bundled real clip) in chunks of ``chunk``,
    each a Dask task; returns the frames that mismatched. ``scheduler``: a running scheduler's
    address; None starts a LocalCluster of ``workers`` processes here."""
    from dask.distributed import as_completed

    rng = np.random.default_rng(seed)
    clip = load_clip("vtest_64x48") if clip is None else clip
    starts = range(0, count, chunk)
    chunks = [soak_frames(clip, min(chunk, count - done), rng) for done in starts]
    with dask_client(scheduler, workers) as client:
        futures = {client.submit(soak_chunk, config, frames, idle=idle, stall=stall,
                                 seed=seed * 1000 + number, simulator=simulator,
                                 pure=False): (done, len(frames))
                   for number, (done, frames) in enumerate(zip(starts, chunks, strict=True))}
        mismatched = 0
        for future in as_completed(futures):
            bad, seconds = future.result()
            done, length = futures[future]
            mismatched += bad
            log(f"soak: frames {done}..{done + length - 1}: {bad} mismatched ({seconds:.0f} s)")
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
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the local Dask cluster (default 2)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running dask.distributed scheduler instead of a local cluster")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.workers < 1:
        parser.error("--frames and --workers must be at least 1")
    mismatched = soak(design(args.design), args.frames, seed=args.seed, workers=args.workers,
                      scheduler=args.scheduler)
    print(f"soak: {args.frames} frames of the real clip through {args.design}, random idle "
          f"and backpressure (0.3): {mismatched} mismatched")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
