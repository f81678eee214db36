"""Accumulator unit with its accumulators in single-port RAM: the iCE40 UP5K's SPRAM."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib.memory import Memory

from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.accumulator_lane import BANKS, WEIGHT_SHAPE
from eventconv.hw.layouts import DELTA_SHAPE, AccumulatorReadSignature, times, window_layout
from eventconv.hw.primitives.single_port_ram import SinglePortRam

__all__ = ["SpramAccumulatorUnit"]


class SpramAccumulatorUnit(AccumulatorUnit):
    """:class:`~eventconv.hw.layer.accumulator.AccumulatorUnit` with each lane's accumulators
    in one single-port RAM (:class:`~eventconv.hw.primitives.single_port_ram.SinglePortRam`:
    on an iCE40 platform SB_SPRAM256KA blocks, two side by side for a word over 16 bits).

    Same ports and results; the read port is paced (``AccumulatorReadSignature(paced=True)``).
    Lane j's RAM holds output channel ``group * lanes + j`` at address ``window * 4 + q``,
    ``window = (group * H/2 + y // 2) * W/2 + x // 2`` the pool's window address and
    ``q = (y % 2) * 2 + x % 2``: ``groups * H * W`` words (:attr:`depth`).

    A single port gives a read or a write per cycle, and an update needs both. So the cycles
    alternate: an update beat (``lanes`` accumulate ops, one per RAM) reads its accumulators in
    an even cycle and writes them back three cycles later, in an odd one; a beat is taken only
    in an even cycle, one every two cycles. With ``lanes`` 2 that is one accumulate op per
    clock, and no pattern of addresses ever conflicts. Stages (each moves on ``advance``; the
    parity counts ``advance`` cycles)::

        take     beat accepted (even); row = group * H/2 + y // 2 and the weight's base
                 address registered
        row      RAM address = (row * W/2 + x // 2) * 4 + q registered; the weight read
        read     the RAMs read (even); the weight registered
        memory   the word registered as it leaves the RAM; delta * weight registered;
                 whether the commit stage holds the same address registered
        mult     the word, or the sum of the beat just ahead if it is not written yet, plus
                 the product, registered; window pushed to ``touched``
        commit   the sum written (odd)

    The RAMs' pins come from registers only (the UP5K's SPRAMs sit in its corners, far from
    the logic): each cycle's access is decided the cycle before, for the state the stages
    will be in, and made once, in the first cycle of that state; a stage held by ``touched``
    makes no access. The word read is registered in the memory stage's cycle, while the RAM
    still gives it (the next access is made at the end of that cycle); that stage is never
    held: only a window in the mult stage holds the stages, and beats come two apart.

    Latency: a beat taken in cycle t has its window (or the end of frame) valid on ``touched``
    from t+5 (:attr:`LATENCY`) and is written at the end of t+5. Throughput: one beat per two
    cycles.

    The pool's reads (during the hold): a read of a window with ``en`` in cycle t reads the
    four words of every lane at the ends of cycles t+1 to t+4; ``wait`` is high in t+1 to
    t+4, and ``data`` holds the window from t+5: five cycles per read (:attr:`READ_CYCLES`).

    After reset the clear writes the bias into every word, one address of every lane's RAM per
    cycle: ``depth`` cycles, the last write a cycle after ``clearing`` ends.

    Parameters, attributes and members are :class:`AccumulatorUnit`'s; ``target`` only decides
    the pool's and the link's side (the multiplier is registered on both sides here anyway)
    and is not asked for ``ram_read_register``. ``accumulators[j]`` is lane j's
    :class:`~amaranth.lib.memory.MemoryData` in simulation.
    """

    LATENCY = 5
    #: Cycles per update beat taken.
    BEAT_CYCLES = 2
    #: Cycles per read of the pool.
    READ_CYCLES = 5
    #: No register slices around it in the layer: both ports' valid and payload come from
    #: registers, ``updates.ready`` is a LUT of registers, and the pool's ``touched.ready``
    #: too; at the iCE40's clock the slices would only take logic cells the UP5K lacks.
    PORT_REGISTERS = False

    def _create_accumulators(self, shape):
        c = self._config
        self.depth = self.groups * c.height * c.width
        self.rams = [SinglePortRam(shape=shape, depth=self.depth) for _ in range(c.lanes)]
        self.accumulators = [ram.data for ram in self.rams]

    def _read_signature(self):
        return AccumulatorReadSignature(address_width=self.address_width,
                                        accumulator_width=self.accumulator_width,
                                        lanes=self._config.lanes, paced=True)

    def elaborate(self, platform):
        m = Module()
        c = self._config
        clear, upload = self._clear_and_uploads(m, c.height * c.width)
        output, connect = self._touched_output(m)
        advance = output.advance
        odd = Signal()          # the parity of the stages' state, counted on ``advance``
        with m.If(advance):
            m.d.sync += odd.eq(~odd)
        take, holding = self._frame_handshake(m, advance, clear.clearing_next, accepting=~odd)
        beat = self._stages(m, advance, take)
        connect(m, beat.mult, beat.memory)
        reads = self._reads(m, holding)
        port = self._port(m, advance, odd, holding, clear, beat, reads)
        for j in range(c.lanes):
            self._lane(m, j, advance, clear, beat, reads, port, upload)
        return m

    def _stages(self, m, advance, take):
        """The beat's registers from "row" to "commit", loaded on ``advance``. Returns a
        namespace: ``row``, ``read``, ``memory``, ``mult``, ``commit`` (dicts of registers:
        valid, eof, window, delta, address), ``next_read_address`` (the read stage's address
        after this edge), ``weight_address`` and ``hit`` (the mult stage takes the sum of the
        commit stage's beat)."""
        c = self._config
        h, w = c.height, c.width
        taps = c.kernel_size * c.kernel_size

        def stage(name):
            return {"valid": Signal(name=f"{name}_valid"), "eof": Signal(name=f"{name}_eof"),
                    "window": Signal(window_layout(h, w), name=f"{name}_window"),
                    "delta": Signal(DELTA_SHAPE, name=f"{name}_delta"),
                    "address": Signal(range(self.depth), name=f"{name}_address")}

        row, read, memory, mult, commit = (stage(name) for name in
                                           ("row", "read", "memory", "mult", "commit"))
        del row["address"]     # the row stage keeps the address's parts (below)
        row_index = Signal(range(self.groups * (h // 2)))
        row_column = Signal(range(w // 2))
        row_parity = Signal(2)
        row_weight_base = Signal(range(self.groups * c.channels_in * taps))
        row_tap = Signal(range(taps))
        hit = Signal()
        next_read_address = Signal(range(self.depth))
        m.d.comb += next_read_address.eq(Cat(row_parity, times(row_index, w // 2) + row_column))
        update = self.updates.payload
        with m.If(advance):
            m.d.sync += [
                row["valid"].eq(take),
                row["eof"].eq(update.end_of_frame),
                row["window"].y.eq(Mux(update.end_of_frame, 0, update.y >> 1)),
                row["window"].x.eq(Mux(update.end_of_frame, 0, update.x >> 1)),
                row["window"].end_of_frame.eq(update.end_of_frame),
                row["delta"].eq(update.delta),
                row_index.eq(times(update.group, h // 2) + (update.y >> 1)),
                row_column.eq(update.x >> 1),
                row_parity.eq(Cat(update.x[0], update.y[0])),
                row_weight_base.eq(times(update.group, c.channels_in * taps)
                                   + times(update.channel, taps)),
                row_tap.eq(update.tap),
                read["address"].eq(next_read_address),
                # The beat ahead is in the commit stage, written only after this one's read.
                hit.eq(commit["valid"] & ~commit["eof"]
                       & (commit["address"] == memory["address"])),
            ]
            for before, after in ((row, read), (read, memory), (memory, mult), (mult, commit)):
                m.d.sync += [after[key].eq(before[key]) for key in after
                             if not (after is read and key == "address")]
        return SimpleNamespace(row=row, read=read, memory=memory, mult=mult, commit=commit,
                               next_read_address=next_read_address,
                               weight_address=row_weight_base + row_tap, hit=hit)

    def _reads(self, m, holding):
        """The pool's paced reads: on ``en`` the window's word 0 is read, while ``left`` is 4
        to 2 the others (``step`` 1-3), at the latched window address; ``read.wait`` for four
        cycles. Returns a namespace: ``start``, ``more`` (another word to read), ``q`` and
        ``address`` of the next word (the window the pool gives when no read runs: its
        ``read.addr`` is a register, so the address does not wait for ``en``)."""
        left = Signal(3)
        step = Signal(2)
        window = Signal(self.address_width)
        running = Signal()      # left != 0, as a flip-flop
        # The pool never gives ``en`` while ``wait`` is high.
        start = holding & self.read.en
        with m.If(start):
            m.d.sync += [left.eq(4), step.eq(1), window.eq(self.read.addr), running.eq(1)]
        with m.Elif(running):
            m.d.sync += [left.eq(left - 1), step.eq(step + 1), running.eq(left != 1)]
        m.d.comb += self.read.wait.eq(running)
        return SimpleNamespace(start=start, more=left[1:].any(), q=Mux(running, step, 0),
                               address=Mux(running, Cat(step, window),
                                           Cat(Const(0, 2), self.read.addr)))

    def _port(self, m, advance, odd, holding, clear, beat, reads):
        """The RAMs' address, enable and write, registered: decided a cycle ahead for the
        state the stages will be in. The clear; the pool's reads during the hold; else, when
        the stages move, the read of the beat entering the read stage (even) or the commit
        of the one entering the commit stage (odd). Only the enable depends on whether the
        stages move or a pool read starts (``advance``, ``en``); the address and write follow
        the state (clearing, holding, parity) alone.
        ``captured``: the RAMs give word ``captured_q`` of a pool read in this cycle."""
        address = Signal(range(self.depth), name="ram_address")
        en, write = Signal(name="ram_en"), Signal(name="ram_write")
        pool_read, pool_q = Signal(), Signal(2)
        read_next = beat.row["valid"] & ~beat.row["eof"]
        commit_next = beat.mult["valid"] & ~beat.mult["eof"]
        stages_address = Mux(odd, beat.next_read_address, beat.mult["address"])
        m.d.sync += [
            address.eq(Mux(clear.clearing, clear.address,
                           Mux(holding, reads.address, stages_address))),
            write.eq(clear.clearing | (~holding & ~odd)),
            en.eq(clear.clearing | Mux(holding, reads.start | reads.more,
                                       advance & Mux(odd, read_next, commit_next))),
            pool_read.eq(~clear.clearing & holding & (reads.start | reads.more)),
            pool_q.eq(reads.q),
        ]
        captured_valid, captured_q = Signal(), Signal(2)
        m.d.sync += [captured_valid.eq(pool_read), captured_q.eq(pool_q)]
        return SimpleNamespace(address=address, en=en, write=write,
                               captured_valid=captured_valid, captured_q=captured_q)

    def _lane(self, m, j, advance, clear, beat, reads, port, upload):
        """Lane j: its RAM, its weight memory, the multiply-add and the words the pool reads."""
        m.submodules[f"ram_{j}"] = ram = self.rams[j]
        m.submodules[f"weights_{j}"] = rom = Memory(data=self._weight_rom(j))
        weight_port = rom.read_port()
        if upload is not None:
            hits, address, byte = upload
            writer = rom.write_port()
            m.d.comb += [writer.addr.eq(address), writer.data.eq(byte), writer.en.eq(hits[j])]
        shape = self.rams[j].shape
        weight = Signal(WEIGHT_SHAPE, name=f"weight_{j}", reset_less=True)
        raw = Signal(shape, name=f"raw_{j}", reset_less=True)
        product = Signal(signed(DELTA_SHAPE.width + WEIGHT_SHAPE.width), name=f"product_{j}",
                         reset_less=True)
        # The sum, the commit stage's data: loaded for a beat only (it is forwarded across the
        # bubble behind it), or with the bias while clearing.
        total = Signal(shape, name=f"sum_{j}", reset_less=True)
        # The memory stage is never held (only a window in the mult stage holds the stages,
        # and beats come two stages apart): its one cycle is the one the RAM gives the word.
        with m.If(beat.memory["valid"]):
            m.d.sync += raw.eq(ram.data_out)
        with m.If(advance):
            m.d.sync += [weight.eq(weight_port.data),
                         product.eq(beat.memory["delta"] * weight)]
        with m.If(clear.clearing):
            m.d.sync += total.eq(clear.bias[j])
        with m.Elif(advance & beat.mult["valid"]):
            m.d.sync += total.eq(Mux(beat.hit, total, raw) + product)
        m.d.comb += [
            weight_port.addr.eq(beat.weight_address), weight_port.en.eq(advance),
            ram.addr.eq(port.address), ram.en.eq(port.en), ram.write.eq(port.write),
            ram.data_in.eq(total),
        ]
        # The pool's words: the first three captured as they come out, the last one straight
        # from the RAM's output register (it holds until the next access, after the pool
        # took it).
        words = [Signal(shape, name=f"read_{j}_{q}", reset_less=True) for q in range(BANKS - 1)]
        for q, word in enumerate(words):
            with m.If(port.captured_valid & (port.captured_q == q)):
                m.d.sync += word.eq(ram.data_out)
        m.d.comb += [self.read.data[q][j].eq(word) for q, word in enumerate(words)]
        m.d.comb += self.read.data[BANKS - 1][j].eq(ram.data_out)
