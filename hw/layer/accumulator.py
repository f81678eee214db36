"""Accumulator unit: applies fan-out update beats to the accumulator memories (SPEC step 2)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.core.config import Config, checked_config
from eventconv.core.event_format import bits_for_count
from eventconv.hw.layouts import (
    DELTA_SHAPE,
    AccumulatorReadSignature,
    UpdateStream,
    WindowStream,
    times,
    window_layout,
)
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort
from eventconv.hw.primitives.multiplier import registered_multiply
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["AccumulatorUnit"]

WEIGHT_SHAPE = signed(8)
# Pixel parities of a 2 x 2 pool window: bank (y % 2) * 2 + x % 2.
BANKS = 4


class AccumulatorUnit(wiring.Component):
    """Accumulator memories with a pipelined read-modify-write per lane, and their read port.

    Lane j holds the accumulators of output channels ``group * lanes + j`` in four
    :class:`~amaranth.lib.memory.Memory` banks, one per pixel parity: the accumulator at
    ``(y, x)`` is in bank ``(y % 2) * 2 + x % 2`` at address
    ``(group * H/2 + y // 2) * W/2 + x // 2``, ``(channels_out / lanes) * H * W / 4`` words per
    bank (one read and one write port: block RAM). So an update touches one bank per lane, and
    the four accumulators of a 2 x 2 pool window sit at one address of the four banks: the pool
    reads a whole (window, group) in one cycle. Lane j's weights are in a ROM at address
    ``(group * Cin + channel) * K * K + tap``.

    Pipeline (one update beat per clock, all stages advance together)::

        take    beat accepted; bank, window, row = group * H/2 + y // 2 registered
        row     address = row * W/2 + x // 2 registered
        read    the bank's accumulator and the weight read (synchronous, not transparent)
        memory  the four banks' read data and the weight registered as they leave the RAMs;
                which in-flight write the beat must take instead (address compare) registered
        mult    bank selected, or a forwarded sum; delta * weight registered (one DSP per lane)
        write   accumulator + product written back to its bank; window pushed to ``touched``

    When the target wants multiplier registers (``target.multiplier_registers``) the weight is read
    in the row stage instead, and the multiplier gets a stage of its own: weight and delta
    registered in the memory stage, the product in the mult stage, and registered again into the
    write stage. On an ECP5 platform (``platform.family == "ecp5"``) those two register stages are
    the MULT18X18D's own input and output registers
    (:func:`~eventconv.hw.primitives.multiplier.registered_multiply`). Latency, throughput and
    results are the same.

    Latency: a beat taken in cycle t is written at the end of cycle t+5, and its window (or the
    end of frame) is valid on ``touched`` from cycle t+6 (:attr:`LATENCY`). Every memory's read
    data goes straight into a register, and no path has more than an adder and a few LUT levels,
    for the ECP5 (block RAM clock-to-output 5.8 ns) and the iCE40 (slow routing).

    Hazards: a beat's read happens on the edge that ends its read stage; the write on that edge
    and the two after it (the beats one, two and three ahead) are not in its data, so the mult
    stage takes instead the sum the write stage is computing, or one of the last two written
    sums, when bank and address match (the most recent wins). The address comparisons are made
    a stage early, in the memory stage. Back-to-back updates of one address (bursts on one
    pixel, or on neighbours) so run at full rate.

    Throughput: one beat per clock. A beat whose window equals the last window given on
    ``touched`` in this frame is not given again (the groups of one position, and neighbouring
    taps, share a window). ``touched`` has a skid register, so the pipeline stalls only when a
    new window meets a consumer that has not taken the two before it; ``advance`` and
    ``updates.ready`` depend on registers only, not on ``touched.ready``.

    Frame handshake: once an ``end_of_frame`` beat is taken, ``updates`` is not ready again
    until the frame is released. That beat becomes an ``end_of_frame`` beat on ``touched``,
    given after every update of the frame is written. From the transfer of that beat, the unit
    serves ``read`` (window address and ``en`` in, the window's ``4 x lanes`` accumulators the
    next cycle, through the banks' read ports) until the reader pulses ``read.done``;
    ``read.done`` in the cycle of the transfer itself skips the hold. ``read`` is ignored at
    other times.

    After reset the unit writes ``bias`` into every accumulator, one address of every bank of
    every lane per cycle: ``(channels_out / lanes) * H * W / 4`` cycles (:attr:`clear_cycles`),
    with ``updates`` not ready meanwhile.

    Parameters
    ----------
    height, width, channels_in, channels_out, kernel_size, lanes
        As :class:`~eventconv.hw.layer.fanout.FanoutAddressGenerator`.
    weights : nested lists or array, int, [Cout][Cin][K][K]
        In -128..127.
    bias : list of int, [Cout], or None
        Reset value of each output channel's accumulators, in -2**31..2**31-1; None means 0.
    target : :class:`~eventconv.hw.target.Target`
        ``multiplier_registers``: registers on both sides of each multiplier (see above).
        ``ram_read_register``: ``read`` is registered
        (:class:`~eventconv.hw.layouts.AccumulatorReadSignature`,
        ``registered``): during the hold the memory stage's data registers are the reader's,
        loaded when it holds ``read.take``; so each bank's RAM output feeds one register only
        (on the ECP5, the RAM's own output register). For the ECP5.

    Attributes
    ----------
    accumulator_width : int
        Signed width holding bias plus any correlation of uint8 pixels with the weights, as
        :attr:`eventconv.core.config.Config.accumulator_width`.
    groups : int
        ``channels_out / lanes``.
    depth : int
        Words per bank memory, ``groups * H * W / 4``.
    address_width : int
        Width of ``read.addr``.
    clear_cycles : int
        Cycles of the clear sequence after reset (``depth``).
    accumulators : list of list of :class:`~amaranth.lib.memory.MemoryData`
        ``accumulators[j][q]``: bank q of lane j (simulation testbenches may look into them).

    Members
    -------
    updates : In(UpdateStream(Cin, Cout, H, W, K, lanes))
        Update beats from the fan-out.
    touched : Out(WindowStream(H, W))
        2 x 2 pool windows touched by the updates (every touched window at least once per
        frame), then the frame's ``end_of_frame``.
    read : In(AccumulatorReadSignature(address_width, accumulator_width, lanes))
        The reader's port into the accumulators, served between a frame's end and its
        ``done`` pulse.

    Raises
    ------
    TypeError, ValueError
        A shape parameter is out of range (see
        :func:`eventconv.core.ranges.geometry`), or weights or bias have the wrong shape
        or values out of range (as :class:`eventconv.core.config.Config`), or ``target`` is
        not a Target.
    """

    #: Cycles from an update beat's transfer to its window (or end of frame) valid on touched.
    LATENCY = 6

    def __init__(self, *, height, width, channels_in, channels_out, kernel_size, weights,
                 bias=None, lanes=1, target=GENERIC):
        ranges.geometry(height=height, width=width, channels_in=channels_in,
                       channels_out=channels_out, kernel_size=kernel_size, lanes=lanes)
        # Config checks weights and bias and owns the accumulator width derivation: one place.
        obj = {"height": int(height), "width": int(width), "channels_in": int(channels_in),
               "channels_out": int(channels_out), "kernel_size": int(kernel_size),
               "weights": weights, "lanes": int(lanes)}
        if bias is not None:
            obj["bias"] = bias
        self._config = config = Config.from_dict(obj)
        self.target = checked_target(target)
        self.accumulator_width = config.accumulator_width
        self.groups = config.channels_out // config.lanes
        self.depth = self.groups * config.height * config.width // 4
        self.address_width = bits_for_count(self.depth)
        self.clear_cycles = self.depth
        shape = signed(self.accumulator_width)
        # The memory contents are created here so that tests can look into them.
        self.accumulators = [[MemoryData(shape=shape, depth=self.depth, init=[])
                              for _ in range(BANKS)] for _ in range(config.lanes)]
        super().__init__({
            "updates": In(UpdateStream(config.channels_in, config.channels_out, config.height,
                                       config.width, config.kernel_size, config.lanes)),
            "touched": Out(WindowStream(config.height, config.width)),
            "read": In(AccumulatorReadSignature(address_width=self.address_width,
                                                accumulator_width=self.accumulator_width,
                                                lanes=config.lanes,
                                                registered=target.ram_read_register)),
        })

    @classmethod
    def from_config(cls, config, *, lanes=None, target=GENERIC):
        """The unit for a :class:`~eventconv.core.config.Config` (its ``lanes`` unless given)."""
        checked_config(config)
        return cls(height=config.height, width=config.width, channels_in=config.channels_in,
                   channels_out=config.channels_out, kernel_size=config.kernel_size,
                   weights=config.weights, bias=config.bias,
                   lanes=config.lanes if lanes is None else lanes,
                   target=target)

    def _weight_rom(self, lane):
        c = self._config
        taps = c.kernel_size * c.kernel_size
        rows = c.weights[lane::c.lanes].reshape(self.groups * c.channels_in * taps)
        return MemoryData(shape=WEIGHT_SHAPE, depth=len(rows), init=[int(v) for v in rows])

    def elaborate(self, platform):
        m = Module()
        c = self._config
        lanes, h, w = c.lanes, c.height, c.width
        taps = c.kernel_size * c.kernel_size
        shape = signed(self.accumulator_width)
        product_shape = signed(DELTA_SHAPE.width + WEIGHT_SHAPE.width)
        window_shape = window_layout(h, w)
        lane_values = data.ArrayLayout(shape, lanes)

        # read_ports[j][q], write_ports[j][q]: bank q of lane j.
        read_ports, write_ports, weight_ports = [], [], []
        for j in range(lanes):
            read_ports.append([])
            write_ports.append([])
            for q in range(BANKS):
                m.submodules[f"accumulators_{j}_{q}"] = memory = Memory(
                    data=self.accumulators[j][q], attrs=NO_RW_CHECK)
                write_ports[j].append(memory.write_port())
                # A read and a write of one address on one edge: the pipeline forwards the
                # written sum itself, so the read's word does not matter and the RAM's data
                # goes straight into a register (no collision or bypass logic after it).
                read_ports[j].append(UncheckedReadPort(m, memory, name=f"read_{j}_{q}"))
            m.submodules[f"weights_{j}"] = rom = Memory(data=self._weight_rom(j))
            weight_ports.append(rom.read_port())

        # Reset: write bias everywhere before taking updates.
        clearing = Signal(init=1)
        clear_address = Signal(range(self.depth))
        clear_group = Signal(range(self.groups))
        clear_position = Signal(range(h * w // 4))
        with m.If(clearing):
            m.d.sync += clear_address.eq(clear_address + 1)
            with m.If(clear_position == h * w // 4 - 1):
                m.d.sync += [clear_position.eq(0), clear_group.eq(clear_group + 1)]
            with m.Else():
                m.d.sync += clear_position.eq(clear_position + 1)
            with m.If(clear_address == self.depth - 1):
                m.d.sync += clearing.eq(0)

        # Frame handshake: closed from the end_of_frame beat taken until released.
        closed = Signal()
        holding = Signal()

        # Stage registers: "row" -> "read" -> "memory" -> "mult" -> "write", one set per
        # stage, all loaded together on ``advance``. An accumulator is located by its bank and
        # its address in the bank.
        def stage(name):
            return {
                "valid": Signal(name=f"{name}_valid"),
                "eof": Signal(name=f"{name}_eof"),
                "bank": Signal(range(BANKS), name=f"{name}_bank"),
                "window": Signal(window_shape, name=f"{name}_window"),
                "delta": Signal(DELTA_SHAPE, name=f"{name}_delta"),
            }

        row, read, memory, mult = stage("row"), stage("read"), stage("memory"), stage("mult")
        write = {"valid": Signal(name="write_valid"), "eof": Signal(name="write_eof"),
                 "bank": Signal(range(BANKS), name="write_bank"),
                 "window": Signal(window_shape, name="write_window")}
        # Address arithmetic in two steps (it was the iCE40's worst path in one):
        # row = group * H/2 + y // 2, then address = row * W/2 + x // 2; the weight address
        # likewise, group * Cin * K * K + channel * K * K, then + tap.
        row_index = Signal(range(self.groups * (h // 2)))
        row_column = Signal(range(w // 2))
        row_weight_base = Signal(range(self.groups * c.channels_in * taps))
        row_tap = Signal(range(taps))
        read_weight_address = Signal(range(self.groups * c.channels_in * taps))
        read_address = Signal(range(self.depth))
        memory_address = Signal(range(self.depth))
        mult_address = Signal(range(self.depth))
        write_address = Signal(range(self.depth))
        # The memory stage registers the four banks' read data as they come out of the block
        # RAM (ECP5 block RAM has a 5.8 ns clock-to-output, so nothing else goes on that path),
        # and the weight before it reaches the multiplier.
        # Data registers have no reset (none is needed, and a reset would sit between the RAM
        # and the register on the ECP5).
        raw = [[Signal(shape, name=f"raw_{j}_{q}", reset_less=True) for q in range(BANKS)]
               for j in range(lanes)]
        weight = [Signal(WEIGHT_SHAPE, name=f"weight_{j}", reset_less=True)
                  for j in range(lanes)]
        write_old = Signal(lane_values, reset_less=True)
        write_product = Signal(data.ArrayLayout(product_shape, lanes), reset_less=True)
        write_sum = Signal(lane_values)
        # written[0] is the commit stage: the write stage's sum, address and bank registered,
        # written into the bank on the next edge (so the RAMs' write ports see registers only);
        # written[1] and written[2] are the two commits before it, kept for forwarding.
        written = [{"valid": Signal(name=f"written{k}_valid"),
                    "bank": Signal(range(BANKS), name=f"written{k}_bank"),
                    "address": Signal(range(self.depth), name=f"written{k}_address"),
                    "data": Signal(lane_values, name=f"written{k}_data", reset_less=True)}
                   for k in range(3)]
        commit_enable = Signal(BANKS)
        # Which in-flight write the mult stage's beat must take instead of its memory data,
        # decided in the memory stage: hits[k] for the write k+1 beats ahead.
        hits = Signal(4)

        # Deduplication of touched windows against the last one given in this frame. Whether the
        # write stage repeats it is decided a stage early, so no comparator feeds ``advance``.
        last_window = Signal(window_shape)
        last_window_valid = Signal()
        write_same = Signal()
        # A skid register behind ``touched``: ``advance`` then depends on registers only, so
        # the consumer's ready does not ripple back through the pipeline enables.
        skid_valid = Signal()
        skid = Signal(window_shape)

        writing = write["valid"] & ~write["eof"]
        emit = write["valid"] & ~write_same
        advance = Signal()
        m.d.comb += advance.eq(~emit | ~skid_valid)

        update = self.updates.payload
        take = self.updates.valid & self.updates.ready
        # ``clearing | closed`` kept in one register, so ``updates.ready`` is one LUT of four
        # flip-flops (write valid, write_same, skid_valid, stopped).
        stopped = Signal(init=1)
        m.d.comb += self.updates.ready.eq(advance & ~stopped)

        def location(bank_a, address_a, bank_b, address_b):
            return (bank_a == bank_b) & (address_a == address_b)

        with m.If(advance):
            m.d.sync += [
                row["valid"].eq(take),
                row["eof"].eq(update.end_of_frame),
                row["bank"].eq(Cat(update.x[0], update.y[0])),
                row_index.eq(times(update.group, h // 2) + (update.y >> 1)),
                row_column.eq(update.x >> 1),
                row_weight_base.eq(times(update.group, c.channels_in * taps)
                                   + times(update.channel, taps)),
                row_tap.eq(update.tap),
                row["delta"].eq(update.delta),
                row["window"].y.eq(Mux(update.end_of_frame, 0, update.y >> 1)),
                row["window"].x.eq(Mux(update.end_of_frame, 0, update.x >> 1)),
                row["window"].end_of_frame.eq(update.end_of_frame),
                read_address.eq(times(row_index, w // 2) + row_column),
                read_weight_address.eq(row_weight_base + row_tap),
                memory_address.eq(read_address),
                mult_address.eq(memory_address),
                write_address.eq(mult_address),
            ]
            for before, after in ((row, read), (read, memory), (memory, mult), (mult, write)):
                m.d.sync += [after[key].eq(before[key]) for key in after]
            # Forwarding: the memory stage's beat read its accumulator on the edge that ended
            # the read stage. What it must not take from its memory data, in the mult stage:
            # the sum of the beat one ahead (then in the write stage, not yet committed), and
            # the commits of the beats two, three and four ahead (written on that edge, where
            # the read gives an unspecified word, or after it).
            m.d.sync += hits.eq(Cat(
                mult["valid"] & ~mult["eof"] & location(
                    memory["bank"], memory_address, mult["bank"], mult_address),
                writing & location(memory["bank"], memory_address, write["bank"],
                                   write_address),
                *(written[k]["valid"] & location(memory["bank"], memory_address,
                                                 written[k]["bank"], written[k]["address"])
                  for k in range(2))))
            m.d.sync += [
                written[0]["valid"].eq(writing), written[0]["bank"].eq(write["bank"]),
                written[0]["address"].eq(write_address), written[0]["data"].eq(write_sum),
            ]
            for k in (1, 2):
                m.d.sync += [written[k][key].eq(written[k - 1][key]) for key in written[k]]
            for j in range(lanes):
                if not self.target.ram_read_register:
                    m.d.sync += [raw[j][q].eq(read_ports[j][q].data) for q in range(BANKS)]
                if not self.target.multiplier_registers:
                    m.d.sync += weight[j].eq(weight_ports[j].data)
                else:
                    # The weight is read a stage early, so the multiplier has a stage of its
                    # own between registers that feed nothing else: the weight and the delta
                    # registered in the memory stage, the product in the mult stage (on the
                    # ECP5 the MULT18X18D's own registers).
                    product = registered_multiply(m, platform, read["delta"],
                                                  weight_ports[j].data, advance,
                                                  name=f"multiplier_{j}")
                    m.d.sync += write_product[j].eq(product)
                stored = Mux(mult["bank"][1],
                             Mux(mult["bank"][0], raw[j][3], raw[j][2]),
                             Mux(mult["bank"][0], raw[j][1], raw[j][0]))
                forwarded = Mux(hits[0], write_sum[j],
                                Mux(hits[1], written[0]["data"][j],
                                    Mux(hits[2], written[1]["data"][j],
                                        written[2]["data"][j])))
                if not self.target.multiplier_registers:
                    m.d.sync += write_product[j].eq(mult["delta"] * weight[j])
                m.d.sync += write_old[j].eq(Mux(hits.any(), forwarded, stored))
            # The window the write stage compares against after this edge.
            # Both compares side by side, then ``emit`` picks one (not a window multiplexer
            # in front of one compare).
            same_as_write = ~write["eof"] & (mult["window"].as_value() ==
                                             write["window"].as_value())
            same_as_last = last_window_valid & (mult["window"].as_value() ==
                                                last_window.as_value())
            m.d.sync += write_same.eq(~mult["eof"] & Mux(emit, same_as_write, same_as_last))
            with m.If(emit):
                m.d.sync += [
                    last_window.eq(write["window"]),
                    last_window_valid.eq(~write["eof"]),
                ]

        if self.target.ram_read_register:
            # ``raw`` is the reader's data register too: during the hold it loads when the
            # reader takes, so each RAM output feeds this one register.
            with m.If(Mux(holding, self.read.take, advance)):
                m.d.sync += [raw[j][q].eq(read_ports[j][q].data)
                             for j in range(lanes) for q in range(BANKS)]

        # The commit stage: loaded with the write stage's beat on advance, or with the clear
        # sequence's address (its data, the bias, per lane below) while clearing.
        with m.If(clearing):
            m.d.sync += [commit_enable.eq((1 << BANKS) - 1),
                         written[0]["address"].eq(clear_address),
                         written[0]["valid"].eq(0)]
        with m.Elif(advance):
            m.d.sync += commit_enable.eq(Mux(writing, 1 << write["bank"], 0))

        push = advance & emit
        with m.If(~self.touched.valid | self.touched.ready):
            with m.If(skid_valid):
                m.d.sync += [self.touched.payload.eq(skid), skid_valid.eq(0)]
            with m.Elif(push):
                m.d.sync += self.touched.payload.eq(write["window"])
            m.d.sync += self.touched.valid.eq(skid_valid | push)
        with m.Elif(push):
            m.d.sync += [skid.eq(write["window"]), skid_valid.eq(1)]

        # Combinational selections below are Mux expressions, not m.If: Yosys writes m.If as an
        # always @* block, which Icarus does not run until an input changes, and the clear's
        # inputs sit still from time 0 (its writes would be lost).
        for j in range(lanes):
            bias = Const(int(c.bias[j]), shape)
            for group in range(1, self.groups):
                bias = Mux(clear_group == group, Const(int(c.bias[group * lanes + j]), shape),
                           bias)
            m.d.comb += [
                write_sum[j].eq(write_old[j] + write_product[j]),
                weight_ports[j].addr.eq(row_weight_base + row_tap
                                        if self.target.multiplier_registers
                                        else read_weight_address),
                weight_ports[j].en.eq(advance),
            ]
            for q in range(BANKS):
                read_port, write_port = read_ports[j][q], write_ports[j][q]
                m.d.comb += [
                    # An update reads all four banks too (and uses one): no bank decode
                    # between ``advance`` and the RAMs' read enables.
                    read_port.addr.eq(Mux(holding, self.read.addr, read_address)),
                    read_port.en.eq(Mux(holding, self.read.en, advance)),
                    self.read.data[q][j].eq(raw[j][q] if self.target.ram_read_register
                                            else read_port.data),
                    write_port.addr.eq(written[0]["address"]),
                    write_port.data.eq(written[0]["data"][j]),
                    # A commit held through a stall is written again: the same word, harmless
                    # (and forwarded to the beats behind it either way).
                    write_port.en.eq(commit_enable[q]),
                ]
            with m.If(clearing):
                m.d.sync += written[0]["data"][j].eq(bias)

        eof_given = self.touched.valid & self.touched.ready & self.touched.payload.end_of_frame
        with m.If(take & update.end_of_frame):
            m.d.sync += closed.eq(1)
        with m.If((holding | eof_given) & self.read.done):
            m.d.sync += [holding.eq(0), closed.eq(0)]
        with m.Elif(eof_given):
            m.d.sync += holding.eq(1)
        closed_after = Mux((holding | eof_given) & self.read.done, 0,
                           Mux(take & update.end_of_frame, 1, closed))
        clearing_after = clearing & (clear_address != self.depth - 1)
        m.d.sync += stopped.eq(closed_after | clearing_after)
        return m
