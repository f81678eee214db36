"""``eventconv export``: the engine as plain Verilog, its configuration, and a port table."""

import json
from pathlib import Path

from amaranth.hdl import Shape

from eventconv.core.config import Config
from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.layouts import event_layout, pixel_layout
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["export_engine", "port_table"]

PORT_NOTES = {
    "clk": "clock, rising edge",
    "rst": "synchronous reset, active high; then every block clears its memories "
           "(pixels__ready stays low meanwhile)",
    "pixels__payload": "samples in raster order, channels of a pixel adjacent: "
                       "bits [8i+7:8i] = sample i of the beat; then `first`, `last` flags",
    "pixels__valid": "input beat valid", "pixels__ready": "engine takes the beat",
    "events__payload": "output event {channel, y, x, delta (signed), end_of_frame}, "
                       "fields packed from bit 0 in that order",
    "events__valid": "output beat valid", "events__ready": "consumer takes the beat",
    "threshold": "delta detector threshold T (runtime)",
    "shift": "requantization right shift (runtime; also sets the reset pooled map)",
    "dense": "1: dense mode (every pixel is an event), 0: event mode",
    "frame_events_in": "input events of the last completed frame",
    "frame_macs": "accumulate ops of the last completed frame",
    "frame_events_out": "output events of the last completed frame",
    "frame_cycles": "cycles from its first pixel accepted to its end-of-frame beat given",
}


def port_table(engine):
    rows = ["| port | direction | width | meaning |", "|---|---|---|---|",
            "| clk | in | 1 | " + PORT_NOTES["clk"] + " |",
            "| rst | in | 1 | " + PORT_NOTES["rst"] + " |"]
    for path, member, _ in engine.signature.flatten(engine):
        name = "__".join(str(p) for p in path)
        direction = "in" if member.flow.name == "In" else "out"
        width = Shape.cast(member.shape).width
        rows.append(f"| {name} | {direction} | {width} | {PORT_NOTES.get(name, '')} |")
    return "\n".join(rows) + "\n"


def payload_fields(layout):
    return ", ".join(f"`{name}` [{f.offset + f.width - 1}:{f.offset}]" for name, f in layout)


def export_engine(config: Config, output, name="eventconv_engine", *,
                  target=GENERIC):
    """Write ``output`` (Verilog), and beside it ``.json`` (configuration) and ``.md`` (ports).
    ``target``: the FPGA family to build for (:mod:`eventconv.hw.target`).

    Returns the paths written. The text depends only on the configuration (reproducible).
    """
    checked_target(target)

    output = Path(output)
    engine = EventConvEngine(config, target=target)
    output.write_text(export_verilog(engine, name))
    config_path = output.with_suffix(".json")
    config_path.write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    c = config
    doc = [f"# `{name}`: eventconv engine", "",
           f"{c.width}x{c.height}, Cin={c.channels_in}, Cout={c.channels_out}, "
           f"K={c.kernel_size}, accumulator {c.accumulator_width} bits, "
           f"{c.pixels_per_cycle} pixel(s)/cycle, {c.lanes} lane(s); configuration in "
           f"`{config_path.name}`. Semantics: the engine contract, "
           "`eventconv/core/SPEC.md` in the eventconv sources.", "",
           *([(f"Built for target `{target.name}`: every block RAM read port feeds one "
               "register with no reset (a flow that can should move it into the RAM, as "
               "`eventconv.flow.ecp5_outreg` does for the ECP5's DP16KD); a frame takes a cycle "
               "or two more, with the same results."), ""] if target.ram_read_register
             else []),
           port_table(engine),
           f"Input payload fields: {payload_fields(pixel_layout(c.pixels_per_cycle))}.", "",
           "Output payload fields: "
           f"{payload_fields(event_layout(c.channels_out, c.height // 2, c.width // 2))}.", ""]
    doc_path = output.with_suffix(".md")
    doc_path.write_text("\n".join(doc))
    return [output, config_path, doc_path]
