"""The host link's transmitter: which packet goes to the host next (an answer, an ACK, an event
or an end of frame), its body shifted out to the
:class:`~eventconv.hw.link.encoder.PacketEncoder`."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.layouts import EventStream, event_layout
from eventconv.hw.link.encoder import body_layout
from eventconv.protocol.constants import (
    FIGURE_WIDTH,
    FRAME_WIDTH,
    INFO_BYTES,
    OFFSET_WIDTH,
    Reply,
    end_of_frame_bytes,
)

__all__ = ["status_layout", "reply_layout", "PacketTransmitter"]


def status_layout():
    """An ACK, ERROR or SYNC answer: its type ``kind``, its ``byte`` (command, code or token) and
    a position."""
    return data.StructLayout({"kind": 8, "byte": 8, "frame": FRAME_WIDTH,
                              "offset": OFFSET_WIDTH})


def reply_layout():
    """The parser's answer: INFO (``info``; ``status`` unused) or a status answer."""
    return data.StructLayout({"info": 1, "status": status_layout()})


def _bytes_of(value, count):
    return [value[8 * i:8 * i + 8] for i in range(count)]


def _status_body(status):
    return [status.kind, status.byte, *_bytes_of(status.frame, 2),
            *_bytes_of(status.offset, 3)]


class PacketTransmitter(wiring.Component):
    """Chooses the next packet for the host, loads its whole body into a shift register and
    shifts it out on ``body``.

    The sources, by priority: the parser's answer (INFO or a status answer), the feeder's
    ACK, the engine's output (an end of frame with its figures and frame number, or an
    event). The engine's output is taken one item at a time into registers. Half rate on
    purpose (a body byte per two cycles at most; the UART needs 10 bit times per byte):
    every enable here is a register or two, not a handshake from downstream.

    Parameters
    ----------
    info : list of int
        The INFO answer's body, :data:`~eventconv.protocol.constants.INFO_BYTES` bytes.
    output_shape : (int, int, int)
        The engine's output events: (C, H', W') of its last layer.
    layers : int
        The network's layers: END_OF_FRAME carries three figures per layer.

    Members
    -------
    reply : ``In(stream.Signature(reply_layout()))``
        The parser's answer. ``ready`` is a pulse as it is loaded; it comes only while
        ``valid`` is high (a source is chosen only while valid, and a valid source stays so
        until it is taken), so the producer may clear ``valid`` on ``ready`` alone.
    ack : ``In(stream.Signature(status_layout()))``
        The feeder's ACK; ``ready`` as for ``reply``.
    events : ``In(EventStream(*output_shape))``
        The engine's output; ready while nothing of it waits and ``engine_reset`` is low.
    frame_events_in, frame_macs, frame_events_out : ``In(32)`` per layer (an
    ``ArrayLayout`` for more than one), frame_cycles : ``In(32)``
        The engine's figures, taken the cycle after an end-of-frame beat.
    engine_reset : ``In(1)``
        The engine resets (after CONFIG): its output not yet loaded is dropped, frame numbers
        start again from 0.
    body : ``Out(stream.Signature(body_layout()))``
        Packet bodies (registered), to the encoder.

    Latency: a waiting source is chosen in the first cycle t the transmitter is free, loaded
    in t + 1 (its ``ready``), and its first body byte is valid from t + 3. Throughput: a body
    byte per two cycles at most.
    """

    def __init__(self, *, info, output_shape, layers=1):
        self.info = list(info)
        self.layers = layers
        self.event_layout = event_layout(*output_shape)
        self.event_bytes = (self.event_layout["end_of_frame"].offset + 7) // 8
        #: The longest body: the shift register's length.
        self.longest = max(INFO_BYTES, end_of_frame_bytes(layers))
        figure = FIGURE_WIDTH if layers == 1 else data.ArrayLayout(FIGURE_WIDTH, layers)
        super().__init__({
            "reply": In(stream.Signature(reply_layout())),
            "ack": In(stream.Signature(status_layout())),
            "events": In(EventStream(*output_shape)),
            "frame_events_in": In(figure),
            "frame_macs": In(figure),
            "frame_events_out": In(figure),
            "frame_cycles": In(FIGURE_WIDTH),
            "engine_reset": In(1),
            "body": Out(stream.Signature(body_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        # The engine's output: one event, or an end of frame with its figures, at a time.
        event_pending = Signal()
        event_is_end = Signal()
        event_value = Signal(self.event_layout)
        figures_wait = Signal()
        figures = Signal((3 * self.layers + 1) * FIGURE_WIDTH)
        frame_number = Signal(FRAME_WIDTH)
        # Not while the engine resets: an event given then belongs to a dropped frame.
        m.d.comb += self.events.ready.eq(~event_pending & ~figures_wait & ~self.engine_reset)
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += event_value.eq(self.events.payload)
            with m.If(self.events.payload.end_of_frame):
                m.d.sync += figures_wait.eq(1)
            with m.Else():
                m.d.sync += [event_pending.eq(1), event_is_end.eq(0)]
        with m.If(figures_wait):
            # The engine's figures are valid from the cycle after the end-of-frame beat.
            m.d.sync += [figures.eq(Cat(*self._per_layer_figures(), self.frame_cycles)),
                         figures_wait.eq(0), event_pending.eq(1), event_is_end.eq(1)]

        # By priority; the last two, the engine's output, are dropped by ``engine_reset``.
        sources = [
            (self.info, self.reply.valid & self.reply.payload.info),
            (_status_body(self.reply.payload.status),
             self.reply.valid & ~self.reply.payload.info),
            (_status_body(self.ack.payload), self.ack.valid),
            ([Reply.END_OF_FRAME, *_bytes_of(frame_number, 2),
              *_bytes_of(figures, len(figures) // 8)], event_pending & event_is_end),
            ([Reply.EVENT, *_bytes_of(event_value.as_value(), self.event_bytes)],
             event_pending & ~event_is_end),
        ]

        # A source's flag is cleared (``ready`` for the parser's and the feeder's) as it is
        # loaded, under the load's own condition: apart from it, Yosys builds a deeper enable
        # for the packet registers.
        def on_load(loading):
            with m.If(loading[0] | loading[1]):
                m.d.comb += self.reply.ready.eq(1)
            with m.If(loading[2]):
                m.d.comb += self.ack.ready.eq(1)
            with m.If(loading[3] | loading[4]):
                m.d.sync += event_pending.eq(0)
            with m.If(loading[3]):
                m.d.sync += frame_number.eq(frame_number + 1)

        self._shift_out(m, sources, on_load)

        # CONFIG drops the engine's output not yet loaded for sending (its frames are gone),
        # in the cycle after it, with the engine's reset (a few loads instead of the whole
        # parser's decision on these enables): meanwhile ``events`` is not ready, and the CONFIG
        # answer, waiting from that cycle on, goes before any event in the transmitter.
        with m.If(self.engine_reset):
            m.d.sync += [event_pending.eq(0), figures_wait.eq(0), frame_number.eq(0)]
        return m

    def _per_layer_figures(self):
        """Each layer's events_in, macs and events_out in END_OF_FRAME's order."""
        def element(member, index):
            return member if self.layers == 1 else member[index]
        return [element(getattr(self, name), index) for index in range(self.layers)
                for name in ("frame_events_in", "frame_macs", "frame_events_out")]

    def _shift_out(self, m, sources, on_load):
        """Chooses one of ``sources`` (``(body, wanted)`` pairs, by priority), loads its body
        and shifts it out on ``body``. ``on_load(loading)`` adds what else happens as a source
        is loaded (``loading``: the one-hot choice, valid in that cycle)."""
        longest = self.longest
        packet = [Signal(8, name=f"packet_{i}") for i in range(longest)]
        left = Signal(range(longest + 1))
        busy = Signal()
        final = Signal()
        # A register per field, not one for the payload (a register's enable is worked out
        # for all its bits).
        body_valid, body_last = Signal(), Signal()
        body_data = Signal(8)
        m.d.comb += [self.body.valid.eq(body_valid), self.body.payload.data.eq(body_data),
                     self.body.payload.last.eq(body_last)]
        with m.If(self.body.ready):
            m.d.sync += body_valid.eq(0)

        # What to send next is chosen in one cycle (by priority, into a one-hot register) and
        # loaded in the next, as an AND-OR of the sources: no priority chain in front of the
        # packet registers. A source chosen stays put until it is loaded (its pending flag
        # guards it), except the engine's output that CONFIG drops: masked as it is chosen.
        choice = Signal(len(sources))
        choosing = Signal()
        priority = Signal(len(sources))
        taken = Const(0, 1)
        for k, (_, wanted) in enumerate(sources):
            m.d.comb += priority[k].eq(wanted & ~taken)
            taken = taken | wanted
        # The choice register is used as it is, without a check in front (see above).
        loading = choice

        with m.If(busy):
            with m.If(~body_valid):
                m.d.sync += [body_valid.eq(1), body_data.eq(packet[0]), body_last.eq(final),
                             left.eq(left - 1), final.eq(left == 2), busy.eq(~final)]
                m.d.sync += [packet[i].eq(packet[i + 1]) for i in range(longest - 1)]
        with m.Elif(choosing):
            m.d.sync += choosing.eq(0)
            with m.If(loading != 0):
                length = 0
                for k, (source, _) in enumerate(sources):
                    length = length | Mux(loading[k], len(source), 0)
                m.d.sync += [left.eq(length), busy.eq(1), final.eq(0)]
                for i in range(longest):
                    value = Const(0, 8)
                    for k, (source, _) in enumerate(sources):
                        if i < len(source):
                            value = value | Mux(loading[k], source[i], 0)
                    m.d.sync += packet[i].eq(value)
            on_load(loading)
        with m.Else():
            chosen = Cat(priority[:3], priority[3:] & ~self.engine_reset.replicate(2))
            m.d.sync += [choice.eq(chosen), choosing.eq(chosen != 0)]
