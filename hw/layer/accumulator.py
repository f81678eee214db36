"""Accumulator unit: applies fan-out update beats to the accumulator memories (SPEC step 2)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import MemoryData
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.core.config import Config, checked_config
from eventconv.core.event_format import bits_for_count
from eventconv.hw.layer.accumulator_clear import ClearSequence
from eventconv.hw.layer.accumulator_lane import BANKS, WEIGHT_SHAPE, AccumulatorLane
from eventconv.hw.layer.accumulator_touched import TouchedOutput
from eventconv.hw.layouts import (
    DELTA_SHAPE,
    AccumulatorReadSignature,
    UpdateStream,
    UploadSignature,
    WindowStream,
    times,
    window_layout,
)
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.upload import lane_weights, upload_memories, upload_width

__all__ = ["AccumulatorUnit"]


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
        write   accumulator + product registered for its bank; window pushed to ``touched``
        commit  the sum written into its bank (the write ports see registers only)

    When the target wants multiplier registers (``target.multiplier_registers``) the weight is read
    in the row stage instead, and the multiplier gets a stage of its own: weight and delta
    registered in the memory stage, the product in the mult stage, and registered again into the
    write stage. On an ECP5 platform (``platform.family == "ecp5"``) those two register stages are
    the MULT18X18D's own input and output registers
    (:func:`~eventconv.hw.primitives.multiplier.registered_multiply`). Latency, throughput and
    results are the same.

    Latency: a beat taken in cycle t is written into its bank at the end of cycle t+6, and its
    window (or the end of frame) is valid on ``touched`` from cycle t+6 (:attr:`LATENCY`), so
    a frame's sums are all written by the time its end shows there. Every memory's read
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
    other times, except with ``target.pool_read_port``: then every bank has a second read
    port, the reader's, which serves ``read`` at any time, also while updates run (the reader
    reads only windows no later update of the frame writes: their updates are in the banks
    once a window a row slack below shows on ``touched``, see the pool).

    After reset the unit writes ``bias`` into every accumulator, one address of every bank of
    every lane per cycle: ``(channels_out / lanes) * H * W / 4`` cycles (:attr:`clear_cycles`),
    with ``updates`` not ready meanwhile.

    Parts: an :class:`~eventconv.hw.layer.accumulator_lane.AccumulatorLane` per lane (its
    banks, weight ROM, data registers, multiplier and forwarding),
    :class:`~eventconv.hw.layer.accumulator_touched.TouchedOutput` (deduplication, skid
    register, ``advance``) and :class:`~eventconv.hw.layer.accumulator_clear.ClearSequence`;
    the unit itself keeps what all lanes share: the stage registers and addresses, the address
    compares of the forwarding, the commit stage's address and enables, and the frame handshake.

    Parameters
    ----------
    height, width, channels_in, channels_out, kernel_size, lanes
        As :class:`~eventconv.hw.layer.fanout.FanoutAddressGenerator`.
    weights : nested lists or array, int, [Cout][Cin][K][K]
        In -128..127.
    bias : list of int, [Cout], or None
        Reset value of each output channel's accumulators, in -2**31..2**31-1; None means 0.
    upload_base : int or None
        Not None: built for uploads (:mod:`eventconv.protocol.upload`): the weights in RAM
        written through ``upload`` (memories ``upload_base + j`` for lane j, then
        ``upload_base + lanes`` for the bias, written into registers), and the accumulators
        :func:`~eventconv.protocol.upload.upload_width` wide.
    target : :class:`~eventconv.hw.target.Target`
        ``multiplier_registers``: registers on both sides of each multiplier (see above).
        ``registered_reader`` (RAM read registers, no port of the reader's own): ``read`` is
        registered (:class:`~eventconv.hw.layouts.AccumulatorReadSignature`,
        ``registered``): during the hold the memory stage's data registers are the reader's,
        loaded when it holds ``read.take``; so each bank's RAM output feeds one register only
        (on the ECP5, the RAM's own output register). For the ECP5. ``pool_read_port``: the
        reader's own ports (see above).

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
        ``done`` pulse (with ``target.pool_read_port`` at any time, through ports of its own).
    upload : In(UploadSignature()) (with ``upload_base``)
        Uploaded weight and bias bytes; write only while no frame runs, then reset (the
        clear writes the new bias, and the engine primes the layers after it).

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
    #: Cycles per update beat taken.
    BEAT_CYCLES = 1
    #: Cycles per read of the pool.
    READ_CYCLES = 1
    #: The layer puts a register slice on each side (ECP5 clock: 8 ns).
    PORT_REGISTERS = True

    def __init__(self, *, height, width, channels_in, channels_out, kernel_size, weights,
                 bias=None, lanes=1, target=GENERIC, upload_base=None):
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
        self.upload_base = upload_base
        self.accumulator_width = (config.accumulator_width if upload_base is None
                                  else upload_width(config))
        self.groups = config.channels_out // config.lanes
        windows = self.groups * config.height * config.width // 4
        self.address_width = bits_for_count(windows)
        shape = signed(self.accumulator_width)
        self._create_accumulators(shape)
        self.clear_cycles = self.depth
        super().__init__({
            "updates": In(UpdateStream(config.channels_in, config.channels_out, config.height,
                                       config.width, config.kernel_size, config.lanes)),
            "touched": Out(WindowStream(config.height, config.width)),
            "read": In(self._read_signature()),
            **({"upload": In(UploadSignature())} if upload_base is not None else {}),
        })

    def _create_accumulators(self, shape):
        """``depth`` and ``accumulators``; the contents are created here so that tests can look
        into them."""
        c = self._config
        self.depth = self.groups * c.height * c.width // 4
        self.accumulators = [[MemoryData(shape=shape, depth=self.depth, init=[])
                              for _ in range(BANKS)] for _ in range(c.lanes)]

    def _read_signature(self):
        return AccumulatorReadSignature(address_width=self.address_width,
                                        accumulator_width=self.accumulator_width,
                                        lanes=self._config.lanes,
                                        registered=self.target.registered_reader)

    @classmethod
    def from_config(cls, config, *, lanes=None, target=GENERIC, upload_base=None):
        """The unit for a :class:`~eventconv.core.config.Config` (its ``lanes`` unless given)."""
        checked_config(config)
        return cls(height=config.height, width=config.width, channels_in=config.channels_in,
                   channels_out=config.channels_out, kernel_size=config.kernel_size,
                   weights=config.weights, bias=config.bias,
                   lanes=config.lanes if lanes is None else lanes,
                   target=target, upload_base=upload_base)

    def _weight_rom(self, lane):
        rows = lane_weights(self._config, lane)
        return MemoryData(shape=WEIGHT_SHAPE, depth=len(rows), init=rows)

    def _uploads(self, m):
        """The upload bus decoded into a write enable per lane's weight memory and one for
        the bias (memories ``upload_base + j``, then ``+ lanes``), registered beside the data
        and the address, cut to the widest memory's (the link checks every write is within
        its memory)."""
        c, base = self._config, self.upload_base
        widest = max(memory.size for memory in upload_memories(c))
        upload = self.upload
        hits = [Signal(name=f"upload_hit_{k}") for k in range(c.lanes + 1)]
        m.d.sync += [hit.eq(upload.en & (upload.memory == base + k))
                     for k, hit in enumerate(hits)]
        address = Signal(range(widest), name="upload_address")
        data = Signal(8, name="upload_data")
        m.d.sync += [address.eq(upload.address), data.eq(upload.data)]
        return hits, address, data

    def _clear_and_uploads(self, m, positions):
        """The clear sequence (``positions`` words per group and lane) and, for an uploadable
        unit, the decoded upload bus (:meth:`_uploads`, its bias writes wired to the clear);
        returns ``(clear, upload)``, ``upload`` None without uploads."""
        c = self._config
        writable = self.upload_base is not None
        m.submodules.clear = clear = ClearSequence(
            groups=self.groups, positions=positions, lanes=c.lanes, bias=c.bias,
            accumulator_width=self.accumulator_width, writable=writable)
        upload = self._uploads(m) if writable else None
        if upload is not None:
            hits, address, data = upload
            m.d.comb += [clear.bias_write.address.eq(address), clear.bias_write.data.eq(data),
                         clear.bias_write.en.eq(hits[c.lanes])]
        return clear, upload

    def _touched_output(self, m):
        """The :class:`TouchedOutput` behind ``touched``; returns ``(output, connect)``:
        ``connect(m, writing, next_)`` feeds it the stage that pushes its window and the one
        behind it (dicts of ``valid``, ``eof``, ``window``)."""
        c = self._config
        m.submodules.output = output = TouchedOutput(height=c.height, width=c.width)
        wiring.connect(m, output.touched, wiring.flipped(self.touched))

        def connect(m, writing, next_):
            m.d.comb += [
                output.write_valid.eq(writing["valid"]),
                output.write_eof.eq(writing["eof"]),
                output.write_window.eq(writing["window"]),
                output.next_eof.eq(next_["eof"]),
                output.next_window.eq(next_["window"]),
            ]
        return output, connect

    def elaborate(self, platform):
        m = Module()
        c = self._config
        clear, upload = self._clear_and_uploads(m, c.height * c.width // 4)
        writable = upload is not None
        output, connect = self._touched_output(m)
        advance = output.advance
        take, holding = self._frame_handshake(m, advance, clear.clearing_next)
        beat = self._stages(m, advance, take)
        connect(m, beat.write, beat.mult)
        written, commit_enable = self._commits(m, advance, clear, beat)
        hits = self._hazards(m, advance, beat, written)

        delta = beat.read["delta"] if self.target.multiplier_registers else beat.mult["delta"]
        # With ``registered_reader`` the memory stage's data registers are the reader's too:
        # during the hold they load when the reader takes, so each RAM output feeds them only.
        load = Mux(holding, self.read.take, advance) if self.target.registered_reader \
            else advance
        for j in range(c.lanes):
            m.submodules[f"lane_{j}"] = lane = AccumulatorLane(
                banks=self.accumulators[j], weights=self._weight_rom(j), target=self.target,
                writable=writable)
            if writable:
                upload_hits, upload_address, upload_data = upload
                m.d.comb += [lane.weight_write.address.eq(upload_address),
                             lane.weight_write.data.eq(upload_data),
                             lane.weight_write.en.eq(upload_hits[j])]
            # With ``target.pool_read_port`` the reader has ports of its own, served at
            # any time (it reads only windows no update writes again in the frame).
            shared = not self.target.pool_read_port
            if not shared:
                m.d.comb += [lane.pool_addr.eq(self.read.addr), lane.pool_en.eq(self.read.en)]
            m.d.comb += [
                lane.advance.eq(advance),
                # An update reads all four banks too (and uses one): no bank decode between
                # ``advance`` and the RAMs' read enables.
                lane.read_addr.eq(Mux(holding & shared, self.read.addr, beat.address["read"])),
                lane.read_en.eq(Mux(holding & shared, self.read.en, advance)),
                lane.load.eq(load),
                lane.weight_addr.eq(beat.weight_address),
                lane.delta.eq(delta),
                lane.bank.eq(beat.mult["bank"]),
                lane.hits.eq(hits),
                lane.commit_addr.eq(written[0]["address"]),
                lane.commit_en.eq(commit_enable),
                lane.clearing.eq(clear.clearing),
                lane.bias.eq(clear.bias[j]),
            ]
            m.d.comb += [self.read.data[q][j].eq(lane.read_data[q]) for q in range(BANKS)]
        return m

    def _frame_handshake(self, m, advance, clearing_next, accepting=1):
        """``updates.ready`` (with ``advance`` and ``accepting``), and the frame handshake:
        closed from the ``end_of_frame`` beat taken until released, holding (the reader's) from
        that beat given on ``touched`` until ``read.done``. Returns ``(take, holding)``: an
        update beat is taken; the hold."""
        closed = Signal()
        holding = Signal()
        update = self.updates.payload
        take = self.updates.valid & self.updates.ready
        # ``clearing | closed`` kept in one register, so ``updates.ready`` is one LUT of four
        # flip-flops (write valid, write_same, skid_valid, stopped).
        stopped = Signal(init=1)
        m.d.comb += self.updates.ready.eq(advance & ~stopped & accepting)

        eof_given = self.touched.valid & self.touched.ready & self.touched.payload.end_of_frame
        with m.If(take & update.end_of_frame):
            m.d.sync += closed.eq(1)
        with m.If((holding | eof_given) & self.read.done):
            m.d.sync += [holding.eq(0), closed.eq(0)]
        with m.Elif(eof_given):
            m.d.sync += holding.eq(1)
        closed_after = Mux((holding | eof_given) & self.read.done, 0,
                           Mux(take & update.end_of_frame, 1, closed))
        m.d.sync += stopped.eq(closed_after | clearing_next)
        return take, holding

    def _stages(self, m, advance, take):
        """The beat's registers, stage by stage from "row" to "write", all loaded together on
        ``advance``; an accumulator is located by its bank and its address in the bank.
        Returns a namespace: ``row``, ``read``, ``memory``, ``mult``, ``write`` (dicts of the
        stage's registers), ``address`` (the bank address of the stages from "read" on, by
        name), ``weight_address`` (the weight ROMs' read address) and ``writing`` (the write
        stage holds an update)."""
        c = self._config
        h, w = c.height, c.width
        taps = c.kernel_size * c.kernel_size
        window_shape = window_layout(h, w)

        def stage(name, delta=True):
            return {
                "valid": Signal(name=f"{name}_valid"),
                "eof": Signal(name=f"{name}_eof"),
                "bank": Signal(range(BANKS), name=f"{name}_bank"),
                "window": Signal(window_shape, name=f"{name}_window"),
                **({"delta": Signal(DELTA_SHAPE, name=f"{name}_delta")} if delta else {}),
            }

        row, read, memory, mult = stage("row"), stage("read"), stage("memory"), stage("mult")
        write = stage("write", delta=False)
        address = {name: Signal(range(self.depth), name=f"{name}_address")
                   for name in ("read", "memory", "mult", "write")}
        # Address arithmetic in two steps (it was the iCE40's worst path in one):
        # row = group * H/2 + y // 2, then address = row * W/2 + x // 2; the weight address
        # likewise, group * Cin * K * K + channel * K * K, then + tap.
        row_index = Signal(range(self.groups * (h // 2)))
        row_column = Signal(range(w // 2))
        row_weight_base = Signal(range(self.groups * c.channels_in * taps))
        row_tap = Signal(range(taps))
        read_weight_address = Signal(range(self.groups * c.channels_in * taps))

        update = self.updates.payload
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
                address["read"].eq(times(row_index, w // 2) + row_column),
                read_weight_address.eq(row_weight_base + row_tap),
                address["memory"].eq(address["read"]),
                address["mult"].eq(address["memory"]),
                address["write"].eq(address["mult"]),
            ]
            for before, after in ((row, read), (read, memory), (memory, mult), (mult, write)):
                m.d.sync += [after[key].eq(before[key]) for key in after]
        # With ``multiplier_registers`` the weight is read a stage early (see the class).
        weight_address = row_weight_base + row_tap if self.target.multiplier_registers \
            else read_weight_address
        return SimpleNamespace(row=row, read=read, memory=memory, mult=mult, write=write,
                               address=address, weight_address=weight_address,
                               writing=write["valid"] & ~write["eof"])

    def _commits(self, m, advance, clear, beat):
        """The commit stage, all lanes' part: the write stage's address and bank registered,
        written into the banks on the next edge (so the RAMs' write ports see registers only),
        or the clear sequence's address while it runs. Returns ``(written, commit_enable)``:
        ``written[0]`` the commit stage's ``valid``, ``bank`` and ``address``, ``written[1]``
        and ``written[2]`` the two commits before it, kept for forwarding; the banks' write
        enables."""
        written = [{"valid": Signal(name=f"written{k}_valid"),
                    "bank": Signal(range(BANKS), name=f"written{k}_bank"),
                    "address": Signal(range(self.depth), name=f"written{k}_address")}
                   for k in range(3)]
        commit_enable = Signal(BANKS)
        with m.If(advance):
            m.d.sync += [
                written[0]["valid"].eq(beat.writing), written[0]["bank"].eq(beat.write["bank"]),
                written[0]["address"].eq(beat.address["write"]),
            ]
            for k in (1, 2):
                m.d.sync += [written[k][key].eq(written[k - 1][key]) for key in written[k]]
        # Loaded with the write stage's beat on advance, or with the clear sequence's address
        # (its data, the bias, in the lanes) while clearing.
        with m.If(clear.clearing):
            m.d.sync += [commit_enable.eq((1 << BANKS) - 1),
                         written[0]["address"].eq(clear.address),
                         written[0]["valid"].eq(0)]
        with m.Elif(advance):
            m.d.sync += commit_enable.eq(Mux(beat.writing, 1 << beat.write["bank"], 0))
        return written, commit_enable

    def _hazards(self, m, advance, beat, written):
        """Which in-flight write the mult stage's beat must take instead of its memory data,
        decided in the memory stage: ``hits[k]`` (a register) for the write k+1 beats ahead."""
        memory, mult, write = beat.memory, beat.mult, beat.write
        address = beat.address

        def location(bank_a, address_a, bank_b, address_b):
            return (bank_a == bank_b) & (address_a == address_b)

        hits = Signal(4)
        with m.If(advance):
            # Forwarding: the memory stage's beat read its accumulator on the edge that ended
            # the read stage. What it must not take from its memory data, in the mult stage:
            # the sum of the beat one ahead (then in the write stage, not yet committed), and
            # the commits of the beats two, three and four ahead (written on that edge, where
            # the read gives an unspecified word, or after it).
            m.d.sync += hits.eq(Cat(
                mult["valid"] & ~mult["eof"] & location(
                    memory["bank"], address["memory"], mult["bank"], address["mult"]),
                beat.writing & location(memory["bank"], address["memory"], write["bank"],
                                        address["write"]),
                *(written[k]["valid"] & location(memory["bank"], address["memory"],
                                                 written[k]["bank"], written[k]["address"])
                  for k in range(2))))
        return hits
