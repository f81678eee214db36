"""One lane of the accumulator unit: its four banks, its weight memory and its read-modify-write."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.hw.layouts import DELTA_SHAPE, UploadSignature
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort
from eventconv.hw.primitives.multiplier import registered_multiply
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["AccumulatorLane", "BANKS", "WEIGHT_SHAPE"]

WEIGHT_SHAPE = signed(8)
# Pixel parities of a 2 x 2 pool window: bank (y % 2) * 2 + x % 2.
BANKS = 4


class AccumulatorLane(wiring.Component):
    """One lane of :class:`~eventconv.hw.layer.accumulator.AccumulatorUnit`: the four banks of
    its accumulators, its weight ROM, and its share of the update pipeline's read, memory,
    mult and write stages, with the forwarding of sums not yet in the banks.

    What all lanes share (the stage registers, addresses and banks, the address compares that
    give ``hits``, the commit address and enables) is the unit's; a lane holds the data::

        read    all four banks read at ``read_addr`` (``read_en``), the weight at
                ``weight_addr`` (``advance``); synchronous, not transparent
        memory  the banks' words registered on ``load``, the weight on ``advance``
        mult    the word of bank ``bank``, or the forwarded sum ``hits`` selects (the write
                stage's, else the newest of the last three commits), registered; and
                ``delta * weight`` registered
        write   old word + product (combinational), registered into the commit stage
        commit  written at ``commit_addr`` into the banks ``commit_en`` enables; the two
                commits before it are kept for forwarding

    With ``target.multiplier_registers`` the weight is read a stage early (``weight_addr`` in
    the row stage, ``delta`` the read stage's) and the multiplier is
    :func:`~eventconv.hw.primitives.multiplier.registered_multiply`: its operands registered in
    the memory stage, the product in the mult stage, registered again into the write stage.

    Latency: a beat whose read is enabled in cycle t, with ``advance`` high from then on, is in
    the commit stage in cycle t+4 and in its bank from t+5. ``read_data`` gives a read enabled
    in cycle t from t+1; with ``target.ram_read_register`` and no ``pool_read_port``, from the
    cycle after the first cycle from t+1 on with ``load`` high; with ``target.pool_read_port``
    it is the reader's own ports' (``pool_en`` in cycle t, from t+1). Throughput: one beat per
    cycle with ``advance`` high.

    Parameters
    ----------
    banks : list of :class:`~amaranth.lib.memory.MemoryData`
        The lane's :data:`BANKS` accumulator banks, one signed shape and depth.
    weights : :class:`~amaranth.lib.memory.MemoryData`
        The lane's weight memory's initial contents, of :data:`WEIGHT_SHAPE`.
    writable : bool
        The weight memory also has a write port, ``weight_write`` (uploaded weights).
    target : :class:`~eventconv.hw.target.Target`
        ``multiplier_registers``: see above. ``ram_read_register``: ``read_data`` is the
        banks' data registers of the memory stage, so each RAM output feeds one register.
        ``pool_read_port``: every bank has a second read port, the reader's; ``read_data``
        is its data (a register on the RAM's output).

    Members
    -------
    advance : In(1)
        The pipeline moves: every stage register loads.
    read_addr, read_en : In(range(depth)), In(1)
        The banks' read ports (the pipeline's read stage, or the unit's reader; with
        ``target.pool_read_port`` the pipeline's only).
    pool_addr, pool_en : In(range(depth)), In(1) (with ``target.pool_read_port``)
        The banks' second read ports, the reader's own, at any time; ``read_data`` is theirs.
    load : In(1)
        Enable of the banks' data registers of the memory stage (``advance``, or the reader's
        ``take`` while it reads with ``target.registered_reader``).
    weight_addr : In(range(weight depth))
        The weight ROM's address, read on ``advance``.
    delta : In(DELTA_SHAPE)
        The multiplier's delta: the mult stage's (the read stage's with
        ``target.multiplier_registers``).
    bank : In(range(BANKS))
        The mult stage's bank.
    hits : In(4)
        Registered in the memory stage: the mult stage's beat takes the sum of the write stage
        (bit 0), or of the commit stage (bit 1), or of one of the two commits before (bits 2
        and 3), instead of its bank's word; the lowest set bit wins.
    commit_addr, commit_en : In(range(depth)), In(BANKS)
        Address and per-bank write enables of the commit stage.
    clearing : In(1)
        The commit stage loads ``bias`` instead of the write stage's sum.
    bias : In(signed(accumulator width))
        The word the clear sequence writes.
    weight_write : In(UploadSignature()) (with ``writable``)
        Byte writes into the weight memory (``memory`` unused: the unit decodes it); write
        only while no frame runs (the driver uploads, then CONFIG resets the engine).
    read_data : Out(ArrayLayout(signed(accumulator width), BANKS))
        The four banks' words of the last read, for the reader.
    """

    def __init__(self, *, banks, weights, target=GENERIC, writable=False):
        if len(banks) != BANKS:
            raise ValueError(f"a lane has {BANKS} banks, not {len(banks)}")
        self._banks, self._weights, self.writable = banks, weights, bool(writable)
        self.target = checked_target(target)
        self._shape = shape = banks[0].shape
        depth = banks[0].depth
        super().__init__({
            "advance": In(1),
            "read_addr": In(range(depth)),
            "read_en": In(1),
            "load": In(1),
            "weight_addr": In(range(weights.depth)),
            "delta": In(DELTA_SHAPE),
            "bank": In(range(BANKS)),
            "hits": In(4),
            "commit_addr": In(range(depth)),
            "commit_en": In(BANKS),
            "clearing": In(1),
            "bias": In(shape),
            "read_data": Out(data.ArrayLayout(shape, BANKS)),
            **({"weight_write": In(UploadSignature())} if self.writable else {}),
            **({"pool_addr": In(range(depth)), "pool_en": In(1)}
               if self.target.pool_read_port else {}),
        })

    def elaborate(self, platform):
        m = Module()
        read_ports, write_ports, pool_ports = [], [], []
        for q, words in enumerate(self._banks):
            m.submodules[f"bank_{q}"] = bank = Memory(data=words, attrs=NO_RW_CHECK)
            write_ports.append(bank.write_port())
            # A read and a write of one address on one edge: the pipeline forwards the
            # written sum itself, so the read's word does not matter and the RAM's data
            # goes straight into a register (no collision or bypass logic after it).
            read_ports.append(UncheckedReadPort(m, bank, name=f"read_{q}"))
            if self.target.pool_read_port:
                # The reader reads only words no update will write again this frame.
                pool_ports.append(UncheckedReadPort(m, bank, name=f"pool_read_{q}"))
        m.submodules.weights = rom = Memory(data=self._weights)
        weight_port = rom.read_port()
        if self.writable:
            upload = rom.write_port()
            m.d.comb += [upload.addr.eq(self.weight_write.address),
                         upload.data.eq(self.weight_write.data),
                         upload.en.eq(self.weight_write.en)]

        # Data registers have no reset (none is needed, and a reset would sit between the RAM
        # and the register on the ECP5).
        raw = [Signal(self._shape, name=f"raw_{q}", reset_less=True) for q in range(BANKS)]
        old = Signal(self._shape, name="write_old", reset_less=True)
        product = Signal(signed(DELTA_SHAPE.width + WEIGHT_SHAPE.width), name="write_product",
                         reset_less=True)
        total = Signal(self._shape, name="write_sum")
        # written[0] is the commit stage's sum; written[1] and written[2] the two commits before.
        written = [Signal(self._shape, name=f"written{k}_data", reset_less=True)
                   for k in range(3)]

        # The memory stage registers the banks' words as they come out of the block RAM (ECP5
        # block RAM has a 5.8 ns clock-to-output, so nothing else goes on that path).
        with m.If(self.load):
            m.d.sync += [raw[q].eq(read_ports[q].data) for q in range(BANKS)]
        if self.target.multiplier_registers:
            # The weight is read a stage early, so the multiplier has a stage of its own
            # between registers that feed nothing else: the weight and the delta registered
            # in the memory stage, the product in the mult stage (on the ECP5 the MULT18X18D's
            # own registers).
            registered = registered_multiply(m, platform, self.delta, weight_port.data,
                                             self.advance, name="multiplier")
        with m.If(self.advance):
            if self.target.multiplier_registers:
                m.d.sync += product.eq(registered)
            else:
                # The weight registered before it reaches the multiplier.
                weight = Signal(WEIGHT_SHAPE, name="weight", reset_less=True)
                m.d.sync += [weight.eq(weight_port.data), product.eq(self.delta * weight)]
            stored = Mux(self.bank[1], Mux(self.bank[0], raw[3], raw[2]),
                         Mux(self.bank[0], raw[1], raw[0]))
            forwarded = Mux(self.hits[0], total,
                            Mux(self.hits[1], written[0],
                                Mux(self.hits[2], written[1], written[2])))
            m.d.sync += [
                old.eq(Mux(self.hits.any(), forwarded, stored)),
                written[0].eq(total),
                written[1].eq(written[0]),
                written[2].eq(written[1]),
            ]
        with m.If(self.clearing):
            m.d.sync += written[0].eq(self.bias)

        # Combinational selections are Mux expressions, not m.If: Yosys writes m.If as an
        # always @* block, which Icarus does not run until an input changes, and the clear's
        # inputs sit still from time 0 (its writes would be lost).
        m.d.comb += [
            total.eq(old + product),
            weight_port.addr.eq(self.weight_addr),
            weight_port.en.eq(self.advance),
        ]
        for q in range(BANKS):
            read_port, write_port = read_ports[q], write_ports[q]
            m.d.comb += [
                read_port.addr.eq(self.read_addr),
                read_port.en.eq(self.read_en),
                self.read_data[q].eq(pool_ports[q].data if pool_ports
                                     else raw[q] if self.target.ram_read_register
                                     else read_port.data),
                write_port.addr.eq(self.commit_addr),
                write_port.data.eq(written[0]),
                # A commit held through a stall is written again: the same word, harmless
                # (and forwarded to the beats behind it either way).
                write_port.en.eq(self.commit_en[q]),
            ]
        for port in pool_ports:
            m.d.comb += [port.addr.eq(self.pool_addr), port.en.eq(self.pool_en)]
        return m
