"""``eventconv export``: the engine as plain Verilog, its configuration, and a port table."""

import json
from pathlib import Path

from amaranth.hdl import Shape

from eventconv.core.outputs import check_outputs, staged_outputs
from eventconv.core.ranges import verilog_name
from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.layouts import event_layout, pixel_layout
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["export_engine", "export_paths", "port_table"]

PORT_NOTES = {
    "clk": "clock, rising edge",
    "rst": "synchronous reset, active high; then every block clears its memories and the "
           "engine primes its layers (pixels__ready stays low meanwhile)",
    "pixels__payload": "samples in raster order, channels of a pixel adjacent: "
                       "bits [8i+7:8i] = sample i of the beat; then `first`, `last` flags",
    "pixels__valid": "input beat valid", "pixels__ready": "engine takes the beat",
    "events__payload": "output event of the last layer {channel, y, x, delta (signed), "
                       "end_of_frame}, fields packed from bit 0 in that order",
    "events__valid": "output beat valid", "events__ready": "consumer takes the beat",
    "threshold": "delta detector threshold T (runtime)",
    "shift": "requantization right shift (runtime; also used by the priming after reset)",
    "output_threshold": "output threshold U (runtime; held at 0 by the priming)",
    "dense": "1: dense mode (every pixel is an event, every position is emitted), "
             "0: event mode",
    "frame_events_in": "input events of the last completed frame",
    "frame_macs": "accumulate ops of the last completed frame",
    "frame_events_out": "output events of the last completed frame",
    "frame_cycles": "cycles from its first pixel accepted to its end-of-frame beat given",
}
# Ports with one element per layer (for a network: layer i in bits [w(i+1)-1:wi]).
PER_LAYER = ("shift", "output_threshold", "frame_events_in", "frame_macs", "frame_events_out")


def port_table(engine):
    layers = len(engine.layers)
    rows = ["| port | direction | width | meaning |", "|---|---|---|---|",
            "| clk | in | 1 | " + PORT_NOTES["clk"] + " |",
            "| rst | in | 1 | " + PORT_NOTES["rst"] + " |"]
    for path, member, _ in engine.signature.flatten(engine):
        name = "__".join(str(p) for p in path)
        direction = "in" if member.flow.name == "In" else "out"
        width = Shape.cast(member.shape).width
        note = PORT_NOTES.get(name, "")
        if name in PER_LAYER and layers > 1:
            note += f"; {layers} x {width // layers} bits, layer i in bits " \
                    f"[{width // layers}(i+1)-1 : {width // layers}i]"
        rows.append(f"| {name} | {direction} | {width} | {note} |")
    return "\n".join(rows) + "\n"


def payload_fields(layout):
    return ", ".join(f"`{name}` [{f.offset + f.width - 1}:{f.offset}]" for name, f in layout)


def layer_table(network):
    rows = ["| layer | input (C x H x W) | output (C x H x W) | K | pool | accumulator bits "
            "| lanes |", "|---|---|---|---|---|---|---|"]
    for index, c in enumerate(network.layers):
        out_c, out_h, out_w = c.output_shape
        rows.append(f"| {index} | {c.channels_in} x {c.height} x {c.width} | {out_c} x {out_h} "
                    f"x {out_w} | {c.kernel_size} | {c.pool} | {c.accumulator_width} | "
                    f"{c.lanes} |")
    return "\n".join(rows) + "\n"


def export_paths(output, config_file=None):
    """The files :func:`export_engine` writes for ``output``: the Verilog, its configuration
    (``.json``) and its port table (``.md``). The configuration is left out when it would be
    ``config_file`` itself (``--config engine.json -o engine.v``): that file already is it."""
    output = Path(output)
    beside = output.with_suffix(".json")
    same = config_file is not None and beside.resolve() == Path(config_file).resolve()
    return [output, *([] if same else [beside]), output.with_suffix(".md")]


def export_engine(config, output, name="eventconv_engine", *, target=GENERIC, config_file=None):
    """Write ``output`` (Verilog, ``.v``), and beside it ``.json`` (configuration, unless that
    is ``config_file``, the file ``config`` came from) and ``.md`` (ports, layers): all or
    none. ``config``: a Config or a Network; ``target``: the FPGA family to build for
    (:mod:`eventconv.hw.target`).

    Returns the paths written. The text depends only on the configuration (reproducible).
    """
    checked_target(target)
    verilog_name("--name", name)
    paths = check_outputs("-o", export_paths(output, config_file), ".v")
    engine = EventConvEngine(config, target=target)
    network = engine.network
    text = export_verilog(engine, name)
    config_name = Path(output).with_suffix(".json").name
    with staged_outputs("-o", paths) as staged:
        staged[0].write_text(text)
        if len(paths) == 3:
            staged[1].write_text(json.dumps(network.to_dict(), indent=1) + "\n")
        staged[-1].write_text(export_doc(engine, name, target, config_name))
    return paths


def export_doc(engine, name, target, config_name):
    """The port table document (markdown) of an exported engine."""
    network = engine.network
    first = network.first
    doc = [f"# `{name}`: eventconv engine", "",
           f"{first.width}x{first.height} input, Cin={first.channels_in}, "
           f"{len(network.layers)} layer(s), {first.pixels_per_cycle} pixel(s)/cycle; "
           f"configuration in `{config_name}`. Semantics: the engine contract, "
           "`eventconv/core/SPEC.md` in the eventconv sources.", "",
           layer_table(network),
           *([(f"Built for target `{target.name}`: every block RAM read port feeds one "
               "register with no reset (a flow that can should move it into the RAM, as "
               "`eventconv.flow.ecp5_outreg` does for the ECP5's DP16KD); a frame takes a cycle "
               "or two more, with the same results."), ""] if target.ram_read_register
             else []),
           port_table(engine),
           f"Input payload fields: {payload_fields(pixel_layout(first.pixels_per_cycle))}.",
           "", "Output payload fields (last layer): "
           f"{payload_fields(event_layout(*network.output_shape))}.", ""]
    return "\n".join(doc)
