"""The host link's feeder: the samples of full buffer slots to the engine's pixel beats (a
WEIGHTS slot's bytes to its upload writes), and an ACK for each slot once they are all in the
engine."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.layouts import PixelStream, UploadSignature
from eventconv.hw.link.slots import SlotReadSignature
from eventconv.hw.link.transmitter import status_layout
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.constants import COUNT_WIDTH, OFFSET_WIDTH, Command, Reply

__all__ = ["SampleFeeder"]


class SampleFeeder(wiring.Component):
    """Reads each full slot sample by sample into pixel beats, then frees it and queues its
    ACK (command PIXELS, the position after the slot's packet).

    ``first`` and ``last`` of a beat come from the feeder's position in the frame, which goes
    back to 0 after each last beat and after ``engine_reset``.

    Parameters
    ----------
    pixels_per_cycle : int
        Samples per beat.
    chunk : int
        Samples per slot (a power of two).
    frame_size : int
        Samples per frame, ``H * W * Cin``.
    target : :class:`~eventconv.hw.target.Target`
        With ``ram_read_register`` a read's word arrives a cycle later (see
        :class:`~eventconv.hw.link.slots.SlotBuffer`).

    Members
    -------
    buffer : ``Out(SlotReadSignature(chunk))``
        To the buffer's read side. ``addr`` is the sample index, a register, in every state
        (only ``en`` follows the state: see :class:`~eventconv.hw.link.slots.SlotBuffer`).
        The slot is freed (``slot.ready``, a pulse) as its ACK is queued.
    pixels : ``Out(PixelStream(pixels_per_cycle))``
        To the engine (registered).
    upload : ``Out(UploadSignature())``
        A WEIGHTS slot's bytes, one write per sample read (registered): memory
        ``end_frame``, addresses from ``end_offset`` on.
    ack : ``Out(stream.Signature(status_layout()))``
        ACK(PIXELS) answers, and ACK(WEIGHTS) with the memory and the address after the
        packet's last byte (registered). ``valid`` is cleared on ``ready`` alone (the
        transmitter's ``ready`` comes only with ``valid``).
    engine_reset : ``In(1)``
        The engine resets: the position in the frame goes back to 0 (the feeder is idle then:
        CONFIG waits for ``quiet``).
    quiet : ``Out(1)``
        Registered (a cycle late): no slot full, the feeder idle and no ACK waiting, i.e.
        every PIXELS packet taken has gone into the engine and been acknowledged.

    Latency and throughput: a slot's first read starts a cycle after it is offered; samples
    take two cycles each (three with ``target.ram_read_register``) plus one per beat; a slot
    is freed the cycle after its last beat's transfer and its ACK is valid from the cycle
    after that (later while an ACK waits).
    """

    def __init__(self, *, pixels_per_cycle, chunk, frame_size, target=GENERIC):
        self.pixels_per_cycle, self.chunk, self.frame_size = pixels_per_cycle, chunk, frame_size
        self.target = checked_target(target)
        super().__init__({
            "buffer": Out(SlotReadSignature(chunk)),
            "pixels": Out(PixelStream(pixels_per_cycle)),
            "upload": Out(UploadSignature()),
            "ack": Out(stream.Signature(status_layout())),
            "engine_reset": In(1),
            "quiet": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ppc = self.pixels_per_cycle
        slot, ack = self.buffer.slot, self.ack
        feeder_idle = Signal()
        # Registered: the parser waits for it only while nothing new enters the slots, so it
        # can then only turn from 0 to 1, and one cycle late is safe.
        m.d.sync += self.quiet.eq(~self.buffer.any_full & feeder_idle & ~ack.valid)

        sample_index = Signal((self.chunk - 1).bit_length())
        remaining = Signal(COUNT_WIDTH)
        slot_last = Signal()
        lane = Signal(range(max(ppc, 2)))
        beat = Signal(data.ArrayLayout(8, ppc))
        feed_position = Signal(OFFSET_WIDTH)
        # A WEIGHTS slot: its bytes go to ``upload``, from address ``upload_address`` on.
        weights = Signal()
        upload_address = Signal(OFFSET_WIDTH)
        m.d.sync += self.upload.en.eq(0)

        with m.FSM(name="feeder"):
            with m.State("idle"):
                m.d.comb += feeder_idle.eq(1)
                with m.If(slot.valid):
                    m.d.sync += [sample_index.eq(0), lane.eq(0),
                                 remaining.eq(slot.payload.count),
                                 weights.eq(slot.payload.weights),
                                 upload_address.eq(slot.payload.end_offset)]
                    m.next = "read"
            with m.State("read"):
                m.d.comb += self.buffer.en.eq(1)
                m.next = "fetch" if self.target.ram_read_register else "latch"
            if self.target.ram_read_register:
                with m.State("fetch"):      # the word goes into the buffer's register
                    m.next = "latch"
            with m.State("latch"):
                m.d.sync += [beat[i].eq(Mux(lane == i, self.buffer.data, beat[i]))
                             for i in range(ppc)]
                m.d.sync += [sample_index.eq(sample_index + 1), lane.eq(lane + 1),
                             remaining.eq(remaining - 1), slot_last.eq(remaining == 1)]
                with m.If(weights):
                    m.d.sync += [self.upload.en.eq(1), self.upload.data.eq(self.buffer.data),
                                 self.upload.memory.eq(slot.payload.end_frame),
                                 self.upload.address.eq(upload_address),
                                 upload_address.eq(upload_address + 1)]
                    m.next = "read"
                    with m.If(remaining == 1):
                        m.next = "done"
                with m.Elif(lane == ppc - 1):
                    m.d.sync += [
                        self.pixels.valid.eq(1),
                        self.pixels.payload.first.eq(feed_position == 0),
                        self.pixels.payload.last.eq(feed_position == self.frame_size - ppc),
                        lane.eq(0),
                    ]
                    m.next = "offer"
                with m.Else():
                    m.next = "read"
            with m.State("offer"):
                with m.If(self.pixels.ready):
                    m.d.sync += [
                        self.pixels.valid.eq(0),
                        feed_position.eq(Mux(self.pixels.payload.last, 0,
                                             feed_position + ppc)),
                    ]
                    with m.If(slot_last):
                        m.next = "done"
                    with m.Else():
                        m.next = "read"
            with m.State("done"):
                with m.If(~ack.valid):
                    m.d.comb += slot.ready.eq(1)
                    m.d.sync += [
                        ack.valid.eq(1), ack.payload.kind.eq(Reply.ACK),
                        ack.payload.byte.eq(Mux(weights, Command.WEIGHTS, Command.PIXELS)),
                        ack.payload.frame.eq(slot.payload.end_frame),
                        ack.payload.offset.eq(Mux(weights, upload_address,
                                                  slot.payload.end_offset)),
                    ]
                    m.next = "idle"
        m.d.comb += [self.buffer.addr.eq(sample_index), self.pixels.payload.data.eq(beat)]
        with m.If(self.engine_reset):
            m.d.sync += feed_position.eq(0)
        with m.If(ack.ready):
            m.d.sync += ack.valid.eq(0)
        return m
