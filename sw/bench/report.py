"""The benchmark's report: ``report.md`` from the measured results."""

import datetime
import importlib
import importlib.metadata
from pathlib import Path

from eventconv.bench.boards import BOARD_CLIP
from eventconv.bench.energy import CATEGORIES, ENERGY_PJ, REFERENCE
from eventconv.bench.measure import (
    STEADY_FROM,
    THRESHOLD,
    resource_notes,
    steady,
    summary,
    utilisation_rows,
)
from eventconv.bench.plots import (
    plot_energy,
    plot_network_layers,
    plot_output_thresholds,
    plot_per_frame,
    plot_thresholds,
    plot_utilisation,
)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(x):
    return f"{100 * x:.1f} %"


def write_report(results, out_dir):
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = results["settings"]
    has_cycles = s.backend == "rtl"
    plot_per_frame(results, out_dir / "per_frame.png")
    plot_thresholds(results, out_dir / "threshold.png")
    plot_energy(results, out_dir / "energy.png")
    plot_output_thresholds(results, out_dir / "output_threshold.png")
    plot_network_layers(results, out_dir / "network_layers.png")
    if has_cycles:
        plot_utilisation(results, out_dir / "utilisation.png")
    key = summary(results)
    modes = results["modes"][s.knobs]
    config = modes["config"]
    frames = results["frames"]
    lanes, ppc = s.knobs
    m = results["machine"]
    text = [
        "# eventconv benchmark: event mode versus dense mode on real video",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
        f"`{s.command}` in {results['seconds']:.0f} s. Backend: **{s.backend}**"
        + (f" (simulator {s.simulator}; every RTL run checked equal to the golden model)"
           if has_cycles else " (golden model only: no cycles, no simulation speed)") + ".",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores (`nproc`), {m['system']}, Python "
        f"{m['python']}; Verilator: {m['verilator']}; Icarus: {m['icarus']}. Source "
        f"revision: `{m['revision']}`.",
        "",
        "## The layer",
        "",
        f"Clip `{s.clip}` (OpenCV `vtest.avi`, people walking past a fixed camera, grayscale), "
        f"frames 0..{len(frames) - 1} of {frames.shape[2]} x {frames.shape[1]} pixels. Layer: "
        f"K = 3, Cin = 1, Cout = 8 (filter bank of `eventconv.core.kernels`), shift "
        f"{config.shift}, accumulator width {config.accumulator_width} bits, threshold "
        f"{THRESHOLD}. Default design: **lanes = {lanes}, pixels per clock = {ppc}**. Event "
        "and dense mode are the same hardware (the `dense` input), run back to back. Steady "
        f"state means frames {STEADY_FROM}..{len(frames) - 1}: frame 0 starts from the "
        "all-zero reference, so every pixel is an event.",
        "",
        "`cycles` is SPEC's figure, counted by the engine itself: from the frame's first pixel "
        "accepted to its end-of-frame marker given, input always valid, output always ready. "
        "The engine takes a frame's first pixel once the previous frame's end-of-frame marker "
        "is out (`hw/engine.py`), so it is each frame's own cost: scan, fan-out and accumulate "
        "overlapped through the event queue, then pooling.",
        "",
        "## Event mode versus dense mode",
        "",
    ]
    rows = [["input events / frame", f"{key['events_in']:.1f}",
             f"{steady(modes['dense']['events_in']).mean():.0f}", ""],
            ["accumulate ops / frame", f"{key['macs_event']:.0f}", f"{key['macs_dense']:.0f}",
             percent(key["macs_fraction"])]]
    if has_cycles:
        rows.append(["cycles / frame", f"{key['cycles_event']:.0f}",
                     f"{key['cycles_dense']:.0f}", percent(key["cycles_fraction"])])
    rows.append(["energy estimate / frame", f"{key['energy_event'] / 1000:.2f} nJ",
                 f"{key['energy_dense'] / 1000:.2f} nJ",
                 percent(key["energy_event"] / key["energy_dense"])])
    steady_label = f"mean of frames {STEADY_FROM}.."
    text += [_table([steady_label, "event mode", "dense mode", "event / dense"], rows), ""]
    if has_cycles:
        verdict = ("meets" if key["cycles_fraction"] <= 0.10 else "MISSES")
        text += [f"Event-mode cycles are **{percent(key['cycles_fraction'])}** of dense-mode "
                 f"cycles (sum over frames {STEADY_FROM}..; per frame median "
                 f"{percent(key['cycles_fraction_median'])}, worst "
                 f"{percent(key['cycles_fraction_max'])}): this {verdict} the target of 10 % "
                 "(aim 5 %).", ""]
    text += ["![per-frame events, accumulate ops and cycles](per_frame.png)", "",
             "<details><summary>Per-frame figures</summary>", ""]
    header = ["frame", "events_in", "macs event", "macs dense", "events_out"]
    if has_cycles:
        header += ["cycles event", "cycles dense", "event / dense"]
    per_frame = []
    for t in range(len(frames)):
        row = [t, modes["event"]["events_in"][t], modes["event"]["macs"][t],
               modes["dense"]["macs"][t], modes["event"]["events_out"][t]]
        if has_cycles:
            row += [modes["event"]["cycles"][t], modes["dense"]["cycles"][t],
                    percent(modes["event"]["cycles"][t] / modes["dense"]["cycles"][t])]
        per_frame.append(row)
    text += [_table(header, per_frame), "", "</details>", ""]

    if has_cycles:
        text += _utilisation_section(results)
    text += _boards_section(results)
    text += _pool_modes_section(results)
    text += _threshold_section(results, has_cycles)
    text += _energy_section(results)
    text += _network_section(results)
    text += _recordings_section(results)
    if results["speed"]:
        text += _speed_section(results)
    text += [
        "## Reproduce",
        "",
        "```sh",
        "make bench                                   # = .venv/bin/python -m eventconv.bench",
        ".venv/bin/python -m eventconv.bench --quick  # short run (fewer frames and settings)",
        ".venv/bin/python -m eventconv.bench --frames 30 --out build/b2  # fewer frames",
        "```",
        "",
        "Options: `--quick`, `--frames N`, `--simulator verilator|icarus` (the main runs; "
        "Verilator is the fast path; Icarus takes minutes per dense frame), `--out DIR`, "
        "`--build-root DIR` (compiled simulations, reused between runs), `--repeats N` "
        "(timed runs), `--backend model` (no RTL).",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def _utilisation_section(results):
    s = results["settings"]
    rows, parts = [], []
    for row in utilisation_rows(results):
        lanes, ppc = row["knobs"]
        ev, de, p = row["event"], row["dense"], row["parts"]
        name = f"{lanes} x {ppc}" + (" (default)" if row["knobs"] == s.knobs else "")
        rows.append([name, f"{ev['cycles']:.0f}", f"{de['cycles']:.0f}", percent(row["fraction"]),
                     f"{ev['bound']:.0f}", f"{ev['ratio_median']:.2f} / {ev['ratio_max']:.2f}",
                     f"{ev['overhead_median']:.0f}", f"{de['bound']:.0f}",
                     f"{de['ratio_median']:.2f}", f"{de['overhead_median']:.0f}",
                     "n/a" if row["fixed"] is None else f"{row['fixed']:.0f}",
                     f"{lanes} of {row['resources']['dsp']}"])
        parts.append([name, f"{p['scan']:.0f}", f"{p['fan-out']:.0f}",
                      f"{p['pool reads']:.0f}", f"{p['output events']:.0f}",
                      f"{sum(p.values()):.0f}",
                      f"{ev['cycles']:.0f}", percent(row["serial_fraction"])])
    r = resource_notes(results["modes"][s.knobs]["config"])
    return [
        "## Hardware knobs and lane utilisation",
        "",
        "Same clip and threshold for every setting (lanes x pixels per clock); event mode on "
        f"every frame, dense mode on all frames for the default and on {s.sweep_dense_frames} "
        "frames for the others (dense work does not depend on the pixels). Bound = max(pixels "
        "/ pixels-per-clock, macs / lanes) per frame; ratio = cycles / bound (median / worst "
        "steady frame), overhead = cycles - bound (median). Means over the steady frames. Fixed "
        "overhead = cycles of a frame without any event (a still scene: the first clip frame "
        "repeated) minus its scan, pixels / pixels-per-clock: the pipeline's latency and frame "
        "handshakes, paid by every frame.",
        "",
        _table(["lanes x pixels/clock", "event cycles", "dense cycles", "event / dense",
                "event bound", "event ratio", "event overhead", "dense bound", "dense ratio",
                "dense overhead", "fixed overhead", "multipliers (DSP)"], rows),
        "",
        "Where the event-mode cycles go: what each stage needs on its own, from the blocks' "
        "documented throughput: the detector scan (pixels / pixels-per-clock), the fan-out "
        "(macs / lanes), the pool's accumulator reads (one per touched "
        "2 x 2 window and channel group) and its output events (one per clock). Their sum is "
        "the cost if the stages did not overlap at all (plus the fixed overhead, and one cycle "
        "per extra event in a detector beat).",
        "",
        _table(["lanes x pixels/clock", "scan", "fan-out", "pool reads", "output events",
                "sum (no overlap)", "measured", "measured / sum (median)"], parts),
        "",
        "![lane utilisation](utilisation.png)",
        "",
        "UP5K budget before synthesis (`eventconv estimate`: the memories mapped as Yosys maps "
        "them): each lane has one 9 x 8 multiplier (one SB_MAC16), so up to "
        f"{r['dsp']} lanes fit the DSPs. The accumulators of this 64 x 48 layer are "
        f"{r['accumulator_kbit']:.0f} kbit ({config_acc_text(results)}); the layer's memories, "
        f"{r['layer_kbit']:.0f} kbit, need {r['layer_ebr']} EBRs of the UP5K's {r['ebr']} in "
        "block RAM, so this benchmark layer is for the ECP5 (ULX3S); the iCEBreaker's build "
        "puts its accumulators in the UP5K's 4 SPRAMs instead, two lanes at a beat every two "
        "cycles (below). The reference frame "
        f"({r['reference_kbit']:.0f} kbit) is small by comparison.",
        "",
    ]


def _boards_section(results):
    rows = []
    for r in results.get("boards", []):
        c, ev, de = r["config"], r["event"], r["dense"]
        rows.append([r["board"], f"{c.width} x {c.height}, Cout {c.channels_out}, {c.lanes} "
                     f"lanes", f"{r['clock'] / 1e6:.2f} MHz", f"{ev['cycles']:.0f}",
                     f"{ev['bound']:.0f}", f"{ev['ratio']:.2f}", f"{de['cycles']:.0f}",
                     f"{de['ratio']:.2f}", f"{ev['fps']:.0f} / {de['fps']:.0f}"])
    if not rows:
        return []
    return [
        "## The boards' own builds",
        "",
        f"Each board's default layer at the clip's size ({BOARD_CLIP}), built for its family "
        "(the iCEBreaker's accumulators in SPRAM: an update beat every two cycles, five cycles "
        "per pool read; the ULX3S's RAM output registers), simulated and checked against the "
        "golden model. Means over the steady frames; bound = max(pixels / pixels-per-clock, "
        "macs x cycles per beat / lanes); ratio = cycles / bound (median).",
        "",
        _table(["board", "layer", "clock", "event cycles", "event bound", "event ratio",
                "dense cycles", "dense ratio", "frames/s event / dense"], rows),
        "",
    ]


def _pool_modes_section(results):
    rows = [[r["mode"], f"{r['event_cycles']:.0f}", f"{r['dense_cycles']:.0f}",
             f"{r['event_per_op']:.3f}", f"{r['dense_per_op']:.3f}", f"{r['ratio']:.3f}"]
            for r in results.get("pool_modes", [])]
    if not rows:
        return []
    c = results["pool_modes"][0]["config"]
    return [
        "## The pool during the frame against after it",
        "",
        f"The default layer ({c.width} x {c.height}, K {c.kernel_size}, Cout "
        f"{c.channels_out}, {c.lanes} lane, {c.pixels_per_cycle} pixel per clock) on "
        f"{BOARD_CLIP}, the generic build (its pool reads the windows no later event can touch "
        "while the frame runs) against the same engine whose pool reads every window after "
        "the frame's end (the board builds' way), side by side, each run checked against the "
        "golden model. Cycles per frame and per accumulate op over the steady frames; the "
        "last column is event / dense cycles against event / dense accumulate ops.",
        "",
        _table(["pool reads", "event cycles", "dense cycles", "event cycles / op",
                "dense cycles / op", "(event / dense cycles) / (event / dense ops)"], rows),
        "",
    ]


def config_acc_text(results):
    c = results["modes"][results["settings"].knobs]["config"]
    return (f"{c.channels_out} x {c.height} x {c.width} accumulators of "
            f"{c.accumulator_width} bits")


def _threshold_section(results, has_cycles):
    rows = []
    for r in results["thresholds"]:
        row = [r["threshold"], f"{r['events_in']:.1f}", f"{r['macs']:.0f}",
               percent(r["macs_fraction"])]
        if has_cycles:
            row.append(f"{r['cycles']:.0f}")
        row += [f"{r['events_out']:.1f}", f"{r['mean_abs_error']:.3f}", r["max_abs_error"],
                percent(r["differing"])]
        rows.append(row)
    header = ["threshold", "events_in / frame", "macs / frame", "macs, % of dense"]
    if has_cycles:
        header.append("cycles / frame")
    header += ["events_out / frame", "pooled mean abs error", "pooled max abs error",
               "pooled values differing"]
    return [
        "## Threshold: work versus accuracy",
        "",
        "Event mode at several thresholds against a dense layer on the raw frames (dense mode: "
        f"exactly conv + requantize + pool of every frame). Work: mean of frames "
        f"{STEADY_FROM}..; error: "
        "the pooled maps (uint8 levels, 0..255) over all frames and channels. Errors come "
        "from the golden model (bit-exact with the RTL)"
        + ("; cycles from the RTL." if has_cycles else "."),
        "",
        _table(header, rows),
        "",
        "![saving versus threshold](threshold.png)",
        "",
    ]


def _recordings_section(results):
    rows = results.get("recordings", [])
    if not rows:
        return []
    has_cycles = "cycles_events" in rows[0]
    header = ["recording", "frame", "windows", "active pixels", "input events / window",
              "macs event / dense"]
    if has_cycles:
        header += ["cycles, address events", "cycles, frame scan", "events / scan"]
    table = []
    for r in rows:
        row = [r["recording"], r["size"], r["windows"], f"{r['active_pct']:.2f} %",
               f"{r['events_in']:.1f}", f"{r['macs_pct']:.2f} %"]
        if has_cycles:
            row += [f"{r['cycles_events']:.0f}", f"{r['cycles_scan']:.0f}",
                    percent(r["cycles_ratio"])]
        table.append(row)
    return [
        "## Real event-camera recordings: address events against the frame scan",
        "",
        "Each bundled recording in 5 ms windows through one 3 x 3 layer (4 channels, 4 lanes, "
        "seeded weights), side by side in one run: the gateware taking the events themselves "
        "and the same windows scanned as count frames; both equal the golden model. Means of "
        "windows 1.. (window 0 starts from an all-zero reference); work against a dense layer.",
        "",
        _table(header, table),
        "",
    ]


def _network_section(results):
    n = results["network"]
    rows = [[r["layer"], f"{r['events_in']:.1f}", f"{r['events_out']:.1f}",
             f"{r['macs_event']:.0f}", f"{r['macs_dense']:.0f}",
             percent(r["macs_event"] / r["macs_dense"])] for r in n["layers"]]
    text = [
        "## A real trained network, layer by layer",
        "",
        f"`{n['net']}` (PNet conv1..conv4_1, real trained weights, int8), input threshold "
        f"{n['threshold']}, lanes {', '.join(map(str, n['lanes']))} per layer. Means of frames "
        "1.. of the clip, event mode; dense mode for the same network.",
        "",
        _table(["layer", "events_in / frame", "events_out / frame", "macs event",
                "macs dense", "event / dense"], rows),
        "",
    ]
    text += ["![accumulate ops per frame, layer by layer](network_layers.png)", ""]
    if n["cycles_event"] is not None:
        text += _network_cycles_text(n)
    rows = [[r["output_threshold"], percent(r["macs_fraction"]), f"{r['mean_abs_error']:.3f}",
             r["max_abs_error"]] for r in n["output_thresholds"]]
    text += [
        "Output threshold U on every layer but the last (a layer emits a position only when "
        "it moved by more than U since it last emitted it), against the dense network's "
        "output (model, all frames):",
        "",
        _table(["U", "macs, % of dense", "output mean abs error", "output max abs error"],
               rows),
        "",
        "![work and error versus output threshold](output_threshold.png)",
        "",
    ]
    return text


def _network_cycles_text(n):
    """The network's RTL cycles against its busiest layer's work bound, event and dense."""
    rows = []
    for mode in ("event", "dense"):
        c = n["network_cycles"][mode]
        rows.append([mode, f"{c['cycles']:.0f}",
                     " / ".join(f"{b:.0f}" for b in c["layer_bounds"]),
                     f"layer {c['busiest_layer']}: {c['bound']:.0f}",
                     f"{c['ratio_median']:.2f} / {c['ratio_max']:.2f}"])
    return [
        f"RTL cycles per frame of the whole network (frames 1..{n['frames'] - 1} event, "
        "frame 1 dense; every run checked equal to the model) against each layer's work "
        "bound, the larger of its accumulate ops / lanes and its inputs / input rate (layer "
        "0: the frame's pixels, one per clock; a later layer: its input events, one per "
        "clock). The layers overlap: each pool (the generic build's) gives the windows no "
        "later event can touch while its frame still runs, and layer i + 1 takes them as they "
        "come; ratio = cycles / busiest bound (median / worst frame).",
        "",
        _table(["mode", "network cycles", "layer bounds", "busiest", "ratio"], rows),
        "",
    ]


def _energy_section(results):
    energy = results["energy"]
    rows = []
    for k in (*CATEGORIES, "total"):
        ev = steady(energy["event"]["energy"][k]).mean()
        de = steady(energy["dense"]["energy"][k]).mean()
        rows.append([k, f"{ev / 1000:.3f}", f"{de / 1000:.3f}", percent(ev / de)])
    counts = {m: energy[m]["counts"] for m in ("event", "dense")}
    count_rows = []
    for name in ("samples", "events_in", "macs", "taps", "windows", "events_out"):
        count_rows.append([name, f"{steady(getattr(counts['event'], name)).mean():.1f}",
                           f"{steady(getattr(counts['dense'], name)).mean():.0f}"])
    meaning = {"add8": "8-bit add (also compares, subtracts)", "add32": "32-bit add",
               "mult8": "8-bit multiply", "sram_bit": "SRAM access, per bit (8 KB, 10 pJ / 64)"}
    table = [[meaning.get(k, k), f"{v:.4g} pJ"] for k, v in ENERGY_PJ.items()]
    return [
        "## Energy estimate per frame",
        "",
        f"Per-operation energies from {REFERENCE}: 8-bit add 0.03 pJ, 8-bit multiply 0.2 pJ, "
        "32-bit add 0.1 pJ, 8 KB SRAM 64-bit read 10 pJ (charged per bit, writes like reads). "
        "Counted: detector reference reads/writes, subtract and compare; weight reads, "
        "multiplies, accumulator read + add + write, tap address adds; pool accumulator "
        "reads, requantize and max compares, pooled-map reads, change subtracts and writes. "
        "Every count's derivation is in `sw/energy.py`. A relative figure: static power, "
        "clocking and control are not in it.",
        "",
        _table([f"mean of frames {STEADY_FROM}.., nJ", "event mode", "dense mode",
                "event / dense"], rows),
        "",
        _table(["operation counts / frame", "event mode", "dense mode"], count_rows),
        "",
        _table(["energy table", "per operation"], table),
        "",
        "![energy per frame](energy.png)",
        "",
    ]


def _speed_section(results):
    s = results["settings"]
    rows = []
    for r in results["speed"]:
        rows.append([r["simulator"], r["mode"], f"{r['marginal_fps']:.2f}",
                     f"{r['short_seconds']:.1f} s / {r['short_frames']}",
                     f"{r['seconds']:.1f} s / {r['frames']}",
                     f"{r['end_to_end_fps']:.2f}", f"{r['first_call']:.1f} s"])
    m = results["machine"]
    simulators = {r["simulator"] for r in results["speed"]}
    missing = [] if simulators >= {"verilator", "icarus"} else [
        "This run timed only " + ", ".join(sorted(simulators)) + " (`--quick`); the full "
        "`make bench` times both simulators.", ""]
    timed = {(r["simulator"], r["mode"]) for r in results["speed"]}
    if ("icarus", "event") in timed and ("icarus", "dense") not in timed:
        missing += ["Icarus dense mode is not timed separately (minutes per frame): event "
                    "mode's frame 0 fires every pixel, so it is a dense frame, and the short "
                    "run above (2 frames) is mostly that frame.", ""]
    return [
        "## RTL simulation speed",
        "",
        f"the rtl backend (cocotb {_package_version('cocotb')}) on the default design, threshold "
        f"{THRESHOLD}, on {m['cpu']} ({m['nproc']} cores). After a warm-up call that builds "
        f"the simulation, a short and a long run are each timed {s.repeats} time(s); the "
        "columns give the medians (time / frames). Marginal frames / s = extra frames / extra "
        "time: the rate once running, on frames after frame 0 (event mode's frame 0 fires every "
        "pixel, so it costs as much as a dense frame and sits in the fixed cost of every call, "
        "with the Verilog export and the simulator start). End to end = long-run frames / its "
        "time.",
        "",
        _table(["simulator", "mode", "frames / s (marginal)", "short run", "long run",
                "frames / s (end to end)", "warm-up call (1 frame)"], rows),
        "",
        *missing,
    ]


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"
