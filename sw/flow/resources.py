"""What a design needs of a board, before synthesis: memory blocks by kind, DSPs, logic.

The memories are read from the elaborated gateware itself (every ``Memory`` of the board core,
its depth, width and ports), and each is mapped the way Yosys's ``memory_libmap`` maps it: the
cheapest of the family's block RAM, its distributed (LUT) RAM and plain logic, at the costs of
Yosys's own library files (iCE40 ``brams.txt``: a 4 kbit block costs 64; Lattice
``brams_16kd.txt``: a DP16KD 128; ``lutrams_trellis.txt``: a 16 x 4 LUT RAM 4; logic 1 per bit
of a RAM, 1/16 per bit of a ROM; memory_libmap's 0.5 per bit of the read multiplexer and per
row of the write decoder of a memory deeper than one cell; and on the ECP5 a fitted extra for
the block RAM, see :mod:`eventconv.flow.families`). On both default builds and a 4-layer
network on the ULX3S every memory lands where this says (README). Multipliers are one per
accumulate lane. The logic estimate is a rough linear model of the blocks
(:data:`LOGIC_MODEL`).

Grouped per engine stage: ``input`` (the delta detector), ``layers[i]``, and ``link`` (UART,
receive FIFO and host link, which a board build adds).
"""

import math
from dataclasses import dataclass

from amaranth.hdl import Fragment, Shape
from amaranth.hdl._mem import MemoryInstance

from eventconv.flow.families import FAMILIES
from eventconv.hw.board.core import BoardCore
from eventconv.hw.primitives.single_port_ram import SINGLE_PORT, SPRAM_DEPTH, spram_blocks
from eventconv.protocol.codec import as_network

__all__ = ["Memory", "memories", "StageEstimate", "estimate_resources", "LOGIC_MODEL",
           "check_fits", "DoesNotFit"]


class DoesNotFit(ValueError):
    """A design that needs more of a resource than the board has."""


@dataclass(frozen=True)
class Memory:
    """One memory of the design: ``path`` (submodule names), ``depth`` x ``width`` bits;
    ``single_port``: a :class:`~eventconv.hw.primitives.single_port_ram.SinglePortRam`;
    ``read_ports``: a written memory with more becomes that many copies, one per read port
    (the accumulator banks with the pool's own port)."""
    path: str
    depth: int
    width: int
    writable: bool
    single_port: bool = False
    read_ports: int = 1

    @property
    def stage(self):
        parts = self.path.split("/")
        if parts[0] != "engine":
            return "link"
        if parts[1].startswith("layer"):
            return f"layers[{int(parts[1][len('layer'):])}]"
        return "input"


def _walk(fragment, path):
    for sub, name, *_ in fragment.subfragments:
        here = path + (str(name),)
        if isinstance(sub, MemoryInstance):
            yield Memory("/".join(here), sub._data.depth, Shape.cast(sub._data.shape).width,
                         bool(sub._write_ports), bool(sub._attrs.get(SINGLE_PORT)),
                         max(1, len(sub._read_ports)))
        else:
            yield from _walk(sub, here)


def memories(network, board):
    """Every memory of ``board``'s core (host link and engine) built for ``network``."""
    core = BoardCore(network, clock_frequency=board.clock_frequency, target=board.target,
                     uploads=board.uploads)
    return list(_walk(Fragment.get(core, None), ()))


def _mapping(memory, modes, cell_cost):
    """``(cost, cells)`` of the cheapest of ``modes`` ((width, depth), ...) for ``memory``, at
    memory_libmap's costs: ``cell_cost`` a cell, and for a memory deeper than one cell the
    read multiplexer (0.5 per data bit per extra row) and the write decoder (0.5 per row)."""
    best = None
    for width, depth in modes:
        rows = math.ceil(memory.depth / depth)
        cells = math.ceil(memory.width / width) * rows
        cost = cells * cell_cost
        if rows > 1:
            cost += 0.5 * (rows - 1) * memory.width + 0.5 * rows
        if best is None or cost < best[0]:
            best = (cost, cells)
    return best


def map_memory(memory, library):
    """``(kind, count)``: the cheapest mapping of ``memory`` with the family's ``library``
    (:class:`eventconv.flow.families.MemoryLibrary`): the block RAM's bel, the distributed
    RAM's, or ``"logic"`` (count: bits); a single-port RAM goes into the family's single-port
    blocks where it has them."""
    if memory.single_port and library.single_port:
        return library.single_port, spram_blocks(memory.depth, memory.width)
    bits = memory.depth * memory.width
    options = [(bits * (library.ram_bit_cost if memory.writable else library.rom_bit_cost),
                "logic", bits)]
    cost, blocks = _mapping(memory, library.block_modes, library.block_cost)
    options.append((cost + library.block_extra, library.block, blocks))
    if library.distributed is not None and memory.writable:
        cost, count = _mapping(memory, (library.distributed_mode,), library.distributed_cost)
        options.append((cost, library.distributed, count))
    _, kind, count = min(options, key=lambda option: option[0])
    copies = memory.read_ports if memory.writable and kind != "logic" else 1
    return kind, count * copies


# Logic cells (iCE40 LUT4 + FF) or LUT4s (ECP5) per stage and per lane: set by hand against
# the two default builds (within 10 %) and PNet on the ULX3S (11 % over); the same numbers for
# both families, whose cells count differently: a rough figure, not a fit.
LOGIC_MODEL = {
    "ice40": {"link": 1150, "input": 420, "layer": 2350, "lane": 330},
    "ecp5": {"link": 1150, "input": 420, "layer": 2350, "lane": 330},
}


@dataclass
class StageEstimate:
    """One stage's needs: ``blocks``, ``single_port`` and ``distributed`` (counts of the
    family's block, single-port and LUT RAM), ``logic_bits`` (memory bits left in logic),
    ``dsp``, ``logic`` (estimate); ``single_port_depth``: the words of its deepest single-port
    RAM (one lane's accumulators)."""
    stage: str
    blocks: int = 0
    single_port: int = 0
    distributed: int = 0
    logic_bits: int = 0
    dsp: int = 0
    logic: int = 0
    memory_bits: int = 0
    single_port_depth: int = 0


def estimate_resources(network, board):
    """Per stage (input, each layer, link) what ``network`` needs on ``board``
    (a :class:`eventconv.hw.boards.BoardSpec`): a list of :class:`StageEstimate`."""
    network = as_network(network)
    library = FAMILIES[board.family].memory
    model = LOGIC_MODEL[board.family]
    stages = {"input": StageEstimate("input", logic=model["input"])}
    for i, layer in enumerate(network.layers):
        stages[f"layers[{i}]"] = StageEstimate(
            f"layers[{i}]", dsp=layer.lanes, logic=model["layer"] + model["lane"] * layer.lanes)
    stages["link"] = StageEstimate("link", logic=model["link"])
    for memory in memories(network, board):
        stage = stages[memory.stage]
        kind, count = map_memory(memory, library)
        stage.memory_bits += memory.depth * memory.width
        if kind == library.block:
            stage.blocks += count
        elif kind == library.single_port:
            stage.single_port += count
            stage.single_port_depth = max(stage.single_port_depth, memory.depth)
        elif kind == library.distributed:
            stage.distributed += count
        else:
            stage.logic_bits += count
    return list(stages.values())


def totals(stages):
    """The sums over stages, as a :class:`StageEstimate` named ``total``."""
    total = StageEstimate("total")
    for stage in stages:
        for name in ("blocks", "single_port", "distributed", "logic_bits", "dsp", "logic",
                     "memory_bits"):
            setattr(total, name, getattr(total, name) + getattr(stage, name))
    return total


def check_fits(network, board, stages=None):
    """Raise :class:`DoesNotFit` naming the resource (and the stage that needs most of it) if
    ``network`` cannot fit ``board``; returns the stages."""
    stages = stages if stages is not None else estimate_resources(network, board)
    total = totals(stages)
    library = FAMILIES[board.family].memory
    checks = [("block RAMs", "blocks", library.block),
              ("DSPs", "dsp", FAMILIES[board.family].dsp)]
    if library.single_port:
        checks.insert(1, ("single-port RAMs", "single_port", library.single_port))
    for label, attribute, bel in checks:
        have = board.capacity[bel]
        need = getattr(total, attribute)
        if need > have:
            worst = max(stages, key=lambda stage: getattr(stage, attribute))
            raise DoesNotFit(
                f"the configuration needs {need} {label} ({bel}) and {board.name} has {have} "
                f"({worst.stage} alone needs {getattr(worst, attribute)})")
    deepest = max(stages, key=lambda stage: stage.single_port_depth)
    if deepest.single_port_depth > SPRAM_DEPTH:
        raise DoesNotFit(
            f"{deepest.stage}'s accumulators need {deepest.single_port_depth} words per lane "
            f"in one single-port RAM and one {library.single_port} holds {SPRAM_DEPTH}: give "
            "the layer more lanes (each lane's RAM holds channels_out / lanes maps)")
    return stages
