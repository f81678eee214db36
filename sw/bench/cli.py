"""``python -m eventconv.bench`` (``make bench``): event mode against dense mode on real video.

One run measures, side by side on the same design and the same frames of the bundled real clip
(OpenCV's ``vtest.avi``, 64 x 48, K = 3, Cout = 8 filter bank, threshold 8):

* per-frame events, accumulate ops and RTL cycles in event and dense mode;
* several hardware knob settings (accumulate lanes x pixels per clock) and how close each gets
  to the bound ``max(pixels / pixels_per_cycle, macs / lanes)``;
* the work saved versus the threshold, with the pooled-output error against a dense layer on
  the raw frames;
* an energy estimate per frame (:mod:`eventconv.bench.energy`);
* a real trained network (PNet's first four layers) layer by layer, event against dense, with
  RTL cycles, and the output threshold's trade of work for accuracy
  (:mod:`eventconv.bench.network`);
* RTL simulation speed under Verilator and Icarus (medians of repeated runs).

It writes ``report.md`` and PNG plots into ``--out`` (default ``build/bench``). Every RTL run is
also checked against the golden model (counts and pooled maps), so a figure never comes from a
broken design. ``--backend model`` runs everything without RTL (no cycles, no speed): the fast
path of the tests.
"""

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from eventconv.bench.measure import DEFAULT_KNOBS, Settings, run_bench, summary
from eventconv.bench.report import percent, write_report


def settings_from_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.bench", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short run: fewer frames, knob settings and repeats (~2 min)")
    parser.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--frames", type=int, default=None,
                        help="clip frames to run (default 60, --quick 12)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--build-root", type=Path, default=Path("build/sim/bench"))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    parser.add_argument("--backend", choices=("rtl", "model"), default="rtl")
    args = parser.parse_args(argv)
    s = Settings(simulator=args.simulator, out=args.out, build_root=args.build_root,
                 backend=args.backend,
                 command="python -m eventconv.bench" + "".join(
                     " " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    if args.quick:
        s = replace(s, frames=12, knob_sweep=((4, 4), DEFAULT_KNOBS), sweep_dense_frames=3,
                    network_frames=4,
                    speed_runs={"verilator": {"event": (2, 30)}}, repeats=1)
    if args.frames is not None:
        if args.frames < 2:
            parser.error(f"--frames must be at least 2, not {args.frames}")
        s = replace(s, frames=args.frames)
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error(f"--repeats must be at least 1, not {args.repeats}")
        s = replace(s, repeats=args.repeats)
    return s


def main(argv=None):
    settings = settings_from_args(argv)
    results = run_bench(settings)
    path = write_report(results, settings.out)
    key = summary(results)
    line = (f"bench: accumulate ops event/dense {percent(key['macs_fraction'])}, energy "
            f"{percent(key['energy_event'] / key['energy_dense'])}")
    if "cycles_fraction" in key:
        line += f", cycles {percent(key['cycles_fraction'])}"
    settings.say(f"{line}\nbench: wrote {path} and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
