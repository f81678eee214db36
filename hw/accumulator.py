"""Accumulator unit: applies fan-out update beats to the accumulator memories (SPEC step 2)."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
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


class AccumulatorUnit(wiring.Component):
    """Accumulator memories with a pipelined read-modify-write per lane, and their read port.

    Lane j holds the accumulators of output channels ``group * lanes + j`` in one
    :class:`~amaranth.lib.memory.Memory` of ``(channels_out / lanes) * H * W`` words at
    address ``(group * H + y) * W + x`` (one read and one write port: block RAM), and its
    weights in a ROM at address ``(group * Cin + channel) * K * K + tap``.

    Pipeline (one update beat per clock, all stages advance together)::

        take    beat accepted; addresses and 2 x 2 window computed and registered
        read    accumulator and weight memories read (synchronous)
        mult    memory data out; delta * weight registered (9 x 8 signed: one DSP per lane)
        write   accumulator + product written back; window pushed to ``touched``

    Latency: a beat taken in cycle t is written at the end of cycle t+3, and its window (or the
    end of frame) is valid on ``touched`` from cycle t+4 (:attr:`LATENCY`).

    Hazards: the memory read is synchronous and not transparent, so a beat reading an address
    that one of the two beats ahead of it writes would get a stale value. The ``mult`` stage
    takes instead the sum the ``write`` stage is computing (the beat just ahead), or the value
    written on the edge that did its read (two ahead); further beats read the memory after the
    write. Back-to-back updates of one address (bursts on one pixel, or on neighbours) so run at
    full rate.

    Throughput: one beat per clock. A beat whose window equals the last window given on
    ``touched`` in this frame is not given again (the groups of one position, and neighbouring
    taps, share a window). ``touched`` has a skid register, so the pipeline stalls only when a
    new window meets a consumer that has not taken the two before it; ``advance`` and
    ``updates.ready`` depend on registers only, not on ``touched.ready``.

    Frame handshake: once an ``end_of_frame`` beat is taken, ``updates`` is not ready again
    until the frame is released. That beat becomes an ``end_of_frame`` beat on ``touched``,
    given after every update of the frame is written. From the transfer of that beat, the unit
    serves ``read`` (address and ``en`` in, ``data`` the next cycle, through the same memory
    read port) until ``release`` is pulsed; ``release`` in the cycle of the transfer itself
    skips the hold. ``read`` is ignored at other times.

    After reset the unit writes ``bias`` into every accumulator, one address of every lane per
    cycle: ``(channels_out / lanes) * H * W`` cycles (:attr:`clear_cycles`), with ``updates``
    not ready meanwhile.

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
        Words per lane memory, ``groups * H * W``.
    address_width : int
        Width of ``read.addr``.
    clear_cycles : int
        Cycles of the clear sequence after reset (``depth``).
    accumulators : list of :class:`~amaranth.lib.memory.MemoryData`
        The lane memories' contents (simulation testbenches may look into them).

    Members
    -------
    updates : In(UpdateStream(Cin, Cout, H, W, K, lanes))
        Update beats from the fan-out.
    touched : Out(WindowStream(H, W))
        2 x 2 pool windows touched by the updates (every touched window at least once per
        frame), then the frame's ``end_of_frame``.
    read : In(AccumulatorReadSignature(address_width, accumulator_width, lanes))
        The reader's port into the accumulators, served between a frame's end and its release.
    release : In(1)
        One-cycle pulse: the reader is done with this frame; updates may resume.

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
        self.depth = self.groups * config.height * config.width
        self.address_width = bits_for_count(self.depth)
        self.clear_cycles = self.depth
        shape = signed(self.accumulator_width)
        # The memory contents are created here so that tests can look into them.
        self.accumulators = [MemoryData(shape=shape, depth=self.depth, init=[])
                             for _ in range(config.lanes)]
        super().__init__({
            "updates": In(UpdateStream(config.channels_in, config.channels_out, config.height,
                                       config.width, config.kernel_size, config.lanes)),
            "touched": Out(WindowStream(config.height, config.width)),
            "read": In(AccumulatorReadSignature(address_width=self.address_width,
                                                accumulator_width=self.accumulator_width,
                                                lanes=config.lanes)),
            "release": In(1),
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

        read_ports, write_ports, weight_ports = [], [], []
        for j in range(lanes):
            m.submodules[f"accumulators_{j}"] = memory = Memory(data=self.accumulators[j])
            m.submodules[f"weights_{j}"] = rom = Memory(data=self._weight_rom(j))
            read_ports.append(memory.read_port())
            write_ports.append(memory.write_port())
            weight_ports.append(rom.read_port())

        # Reset: write bias everywhere before taking updates.
        clearing = Signal(init=1)
        clear_address = Signal(range(self.depth))
        clear_group = Signal(range(self.groups))
        clear_position = Signal(range(h * w))
        with m.If(clearing):
            m.d.sync += clear_address.eq(clear_address + 1)
            with m.If(clear_position == h * w - 1):
                m.d.sync += [clear_position.eq(0), clear_group.eq(clear_group + 1)]
            with m.Else():
                m.d.sync += clear_position.eq(clear_position + 1)
            with m.If(clear_address == self.depth - 1):
                m.d.sync += clearing.eq(0)

        # Frame handshake: closed from the end_of_frame beat taken until released.
        closed = Signal()
        holding = Signal()

        # Stage registers. "take" -> "read" -> "mult" -> "write".
        read_valid, read_eof = Signal(), Signal()
        read_address = Signal(range(self.depth))
        read_weight_address = Signal(range(self.groups * c.channels_in * taps))
        read_delta = Signal(DELTA_SHAPE)
        read_window = Signal(window_shape)

        mult_valid, mult_eof = Signal(), Signal()
        mult_address = Signal(range(self.depth))
        mult_delta = Signal(DELTA_SHAPE)
        mult_window = Signal(window_shape)

        write_valid, write_eof = Signal(), Signal()
        write_address = Signal(range(self.depth))
        write_window = Signal(window_shape)
        write_old = Signal(lane_values)
        write_product = Signal(data.ArrayLayout(product_shape, lanes))
        write_sum = Signal(lane_values)

        # What the last advancing edge wrote: a read on that same edge did not see it.
        written_valid = Signal()
        written_address = Signal(range(self.depth))
        written_value = Signal(lane_values)

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
                read_address.eq((update.group * h + update.y) * w + update.x),
                read_weight_address.eq((update.group * c.channels_in + update.channel) * taps
                                       + update.tap),
                read_delta.eq(update.delta),
                read_window.y.eq(Mux(update.end_of_frame, 0, update.y >> 1)),
                read_window.x.eq(Mux(update.end_of_frame, 0, update.x >> 1)),
                read_window.end_of_frame.eq(update.end_of_frame),

                mult_valid.eq(read_valid),
                mult_eof.eq(read_eof),
                mult_address.eq(read_address),
                mult_delta.eq(read_delta),
                mult_window.eq(read_window),

                write_valid.eq(mult_valid),
                write_eof.eq(mult_eof),
                write_address.eq(mult_address),
                write_window.eq(mult_window),

                written_valid.eq(writing),
                written_address.eq(write_address),
                written_value.eq(write_sum),
            ]
            forward_write = writing & (write_address == mult_address)
            forward_written = written_valid & (written_address == mult_address)
            for j in range(lanes):
                m.d.sync += [
                    write_product[j].eq(mult_delta * weight_ports[j].data),
                    write_old[j].eq(Mux(forward_write, write_sum[j],
                                        Mux(forward_written, written_value[j],
                                            read_ports[j].data))),
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
                read_ports[j].addr.eq(Mux(holding, self.read.addr, read_address)),
                read_ports[j].en.eq(Mux(holding, self.read.en, advance)),
                self.read.data[j].eq(read_ports[j].data),
                write_ports[j].addr.eq(Mux(clearing, clear_address, write_address)),
                write_ports[j].data.eq(Mux(clearing, bias, write_sum[j])),
                write_ports[j].en.eq(clearing | (writing & advance)),
            ]

        eof_given = self.touched.valid & self.touched.ready & self.touched.payload.end_of_frame
        with m.If(take & update.end_of_frame):
            m.d.sync += closed.eq(1)
        with m.If((holding | eof_given) & self.release):
            m.d.sync += [holding.eq(0), closed.eq(0)]
        with m.Elif(eof_given):
            m.d.sync += holding.eq(1)
        return m
