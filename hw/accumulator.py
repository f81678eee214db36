"""Accumulator unit: applies fan-out update beats to the accumulator memories (SPEC step 2)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from ..config import Config
from .fanout import check_geometry
from .layouts import (
    DELTA_SHAPE,
    AccumulatorReadSignature,
    UpdateStream,
    WindowStream,
    bits_for_count,
    window_layout,
)

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

        take    beat accepted; bank, bank address and 2 x 2 window computed and registered
        read    the bank's accumulator and the weight read (synchronous)
        mult    memory data out; delta * weight registered (9 x 8 signed: one DSP per lane)
        write   accumulator + product written back to its bank; window pushed to ``touched``

    Latency: a beat taken in cycle t is written at the end of cycle t+3, and its window (or the
    end of frame) is valid on ``touched`` from cycle t+4 (:attr:`LATENCY`).

    Hazards: the memory read is synchronous, so a beat reading an accumulator that the beat just
    ahead of it writes would get a stale value: the ``mult`` stage takes instead the sum the
    ``write`` stage is computing when bank and address match. The beat two ahead writes on the
    edge that does the read, which the read ports see (they are transparent); further beats
    read the memory after the write. Back-to-back updates of one address (bursts on one pixel,
    or on neighbours) so run at full rate.

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
        As :class:`~eventconv.hw.fanout.FanoutAddressGenerator`.
    weights : nested lists or array, int, [Cout][Cin][K][K]
        In -128..127.
    bias : list of int, [Cout], or None
        Reset value of each output channel's accumulators, in -2**31..2**31-1; None means 0.

    Attributes
    ----------
    accumulator_width : int
        Signed width holding bias plus any correlation of uint8 pixels with the weights, as
        :attr:`eventconv.config.Config.accumulator_width`.
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
        :func:`~eventconv.hw.fanout.check_geometry`), or weights or bias have the wrong shape
        or values out of range (as :class:`eventconv.config.Config`).
    """

    #: Cycles from an update beat's transfer to its window (or end of frame) valid on touched.
    LATENCY = 4

    def __init__(self, *, height, width, channels_in, channels_out, kernel_size, weights,
                 bias=None, lanes=1):
        check_geometry(height=height, width=width, channels_in=channels_in,
                       channels_out=channels_out, kernel_size=kernel_size, lanes=lanes)
        # Config checks weights and bias and owns the accumulator width derivation: one place.
        obj = {"height": int(height), "width": int(width), "channels_in": int(channels_in),
               "channels_out": int(channels_out), "kernel_size": int(kernel_size),
               "weights": weights, "lanes": int(lanes)}
        if bias is not None:
            obj["bias"] = bias
        self._config = config = Config.from_dict(obj)
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
                                                lanes=config.lanes)),
        })

    @classmethod
    def from_config(cls, config, *, lanes=None):
        """The unit for a :class:`~eventconv.config.Config` (its ``lanes`` unless given)."""
        if not isinstance(config, Config):
            raise TypeError(f"config must be an eventconv.config.Config, not {config!r}")
        return cls(height=config.height, width=config.width, channels_in=config.channels_in,
                   channels_out=config.channels_out, kernel_size=config.kernel_size,
                   weights=config.weights, bias=config.bias,
                   lanes=config.lanes if lanes is None else lanes)

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
                    data=self.accumulators[j][q])
                write_ports[j].append(write := memory.write_port())
                # Transparent: a beat reads what the beat two ahead writes on the same edge
                # (no forwarding needed), and Yosys maps it without collision registers.
                read_ports[j].append(memory.read_port(transparent_for=(write,)))
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

        # Stage registers. "take" -> "read" -> "mult" -> "write". An accumulator is located by
        # its bank and its address in the bank.
        read_valid, read_eof = Signal(), Signal()
        read_bank = Signal(range(BANKS))
        read_address = Signal(range(self.depth))
        read_weight_address = Signal(range(self.groups * c.channels_in * taps))
        read_delta = Signal(DELTA_SHAPE)
        read_window = Signal(window_shape)

        mult_valid, mult_eof = Signal(), Signal()
        mult_bank = Signal(range(BANKS))
        mult_address = Signal(range(self.depth))
        mult_delta = Signal(DELTA_SHAPE)
        mult_window = Signal(window_shape)

        write_valid, write_eof = Signal(), Signal()
        write_bank = Signal(range(BANKS))
        write_address = Signal(range(self.depth))
        write_window = Signal(window_shape)
        write_old = Signal(lane_values)
        write_product = Signal(data.ArrayLayout(product_shape, lanes))
        write_sum = Signal(lane_values)

        # Deduplication of touched windows against the last one given in this frame. Whether the
        # write stage repeats it is decided a stage early, so no comparator feeds ``advance``.
        last_window = Signal(window_shape)
        last_window_valid = Signal()
        write_same = Signal()
        # A skid register behind ``touched``: ``advance`` then depends on registers only, so
        # the consumer's ready does not ripple back through the pipeline enables.
        skid_valid = Signal()
        skid = Signal(window_shape)

        writing = write_valid & ~write_eof
        emit = write_valid & ~write_same
        advance = Signal()
        m.d.comb += advance.eq(~emit | ~skid_valid)

        update = self.updates.payload
        take = self.updates.valid & self.updates.ready
        m.d.comb += self.updates.ready.eq(advance & ~clearing & ~closed)

        with m.If(advance):
            m.d.sync += [
                read_valid.eq(take),
                read_eof.eq(update.end_of_frame),
                read_bank.eq(Cat(update.x[0], update.y[0])),
                read_address.eq((update.group * (h // 2) + (update.y >> 1)) * (w // 2)
                                + (update.x >> 1)),
                read_weight_address.eq((update.group * c.channels_in + update.channel) * taps
                                       + update.tap),
                read_delta.eq(update.delta),
                read_window.y.eq(Mux(update.end_of_frame, 0, update.y >> 1)),
                read_window.x.eq(Mux(update.end_of_frame, 0, update.x >> 1)),
                read_window.end_of_frame.eq(update.end_of_frame),

                mult_valid.eq(read_valid),
                mult_eof.eq(read_eof),
                mult_bank.eq(read_bank),
                mult_address.eq(read_address),
                mult_delta.eq(read_delta),
                mult_window.eq(read_window),

                write_valid.eq(mult_valid),
                write_eof.eq(mult_eof),
                write_bank.eq(mult_bank),
                write_address.eq(mult_address),
                write_window.eq(mult_window),
            ]
            forward_write = writing & (write_bank == mult_bank) & (write_address == mult_address)
            for j in range(lanes):
                banks = [port.data for port in read_ports[j]]
                stored = Mux(mult_bank[1], Mux(mult_bank[0], banks[3], banks[2]),
                             Mux(mult_bank[0], banks[1], banks[0]))
                m.d.sync += [
                    write_product[j].eq(mult_delta * weight_ports[j].data),
                    write_old[j].eq(Mux(forward_write, write_sum[j], stored)),
                ]
            # The window the write stage compares against after this edge.
            last_after = Mux(emit, write_window.as_value(), last_window.as_value())
            last_valid_after = Mux(emit, ~write_eof, last_window_valid)
            m.d.sync += write_same.eq(last_valid_after & ~mult_eof &
                                      (mult_window.as_value() == last_after))
            with m.If(emit):
                m.d.sync += [
                    last_window.eq(write_window),
                    last_window_valid.eq(~write_eof),
                ]

        push = advance & emit
        with m.If(~self.touched.valid | self.touched.ready):
            with m.If(skid_valid):
                m.d.sync += [self.touched.payload.eq(skid), skid_valid.eq(0)]
            with m.Elif(push):
                m.d.sync += self.touched.payload.eq(write_window)
            m.d.sync += self.touched.valid.eq(skid_valid | push)
        with m.Elif(push):
            m.d.sync += [skid.eq(write_window), skid_valid.eq(1)]

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
                weight_ports[j].addr.eq(read_weight_address),
                weight_ports[j].en.eq(advance),
            ]
            for q in range(BANKS):
                read, write = read_ports[j][q], write_ports[j][q]
                m.d.comb += [
                    # An update reads only its own bank; the pool reads all four.
                    read.addr.eq(Mux(holding, self.read.addr, read_address)),
                    read.en.eq(Mux(holding, self.read.en, advance & (read_bank == q))),
                    self.read.data[q][j].eq(read.data),
                    write.addr.eq(Mux(clearing, clear_address, write_address)),
                    write.data.eq(Mux(clearing, bias, write_sum[j])),
                    write.en.eq(clearing | (writing & advance & (write_bank == q))),
                ]

        eof_given = self.touched.valid & self.touched.ready & self.touched.payload.end_of_frame
        with m.If(take & update.end_of_frame):
            m.d.sync += closed.eq(1)
        with m.If((holding | eof_given) & self.read.done):
            m.d.sync += [holding.eq(0), closed.eq(0)]
        with m.Elif(eof_given):
            m.d.sync += holding.eq(1)
        return m
