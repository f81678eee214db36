"""Amaranth components to plain Verilog: deterministic text, for export and simulation."""

import os

from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.target import GENERIC

__all__ = ["export_verilog", "engine_verilog", "Ecp5Primitives", "ECP5_PRIMITIVES",
           "Ice40Primitives", "ICE40_PRIMITIVES"]


def export_verilog(component, name, *, platform=None):
    """Plain Verilog of ``component`` with top module ``name`` (deterministic text), elaborated
    for ``platform`` (None: no platform; see :data:`ECP5_PRIMITIVES`)."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog
    return verilog.convert(component, name=name, platform=platform, emit_src=False,
                           strip_internal_attrs=True)


class Ecp5Primitives:
    """Stands in for an ECP5 platform at elaboration (``family == "ecp5"``), so a design
    exported for simulation instantiates the ECP5 primitives a board build would; simulate it
    with :data:`ECP5_MODELS` among the sources."""

    family = "ecp5"


#: Elaborate with this to get the ECP5 primitives (:class:`Ecp5Primitives`).
ECP5_PRIMITIVES = Ecp5Primitives()


class Ice40Primitives:
    """Stands in for an iCE40 platform at elaboration (``family == "ice40"``): the design
    instantiates SB_SPRAM256KA blocks as a board build does; simulate it with
    :func:`eventconv.sim.runner.ice40_models` among the sources."""

    family = "ice40"


#: Elaborate with this to get the iCE40 primitives (:class:`Ice40Primitives`).
ICE40_PRIMITIVES = Ice40Primitives()


def engine_verilog(config, name="eventconv_engine", *, target=GENERIC, address_events=False):
    """Verilog of the engine for ``config`` built for ``target`` (:mod:`eventconv.hw.target`),
    taking frames or, with ``address_events``, an event camera's events."""
    return export_verilog(EventConvEngine(config, target=target,
                                          address_events=address_events), name)
