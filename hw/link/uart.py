"""UART receiver and transmitter, 8N1, as byte streams (the boards' USB serial link).

Both take the clock frequency and the baud rate; one bit lasts ``divisor`` clock cycles,
``divisor = round(clock_frequency / baud_rate)``, which must be at least 4 and within 2 % of
the requested rate (a receiver samples mid-bit, so the two ends may differ by about 4 % in
total over the 10 bits of a character).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["uart_divisor", "received_layout", "UARTReceiver", "UARTTransmitter",
           "MAX_RATE_ERROR", "MIN_DIVISOR"]

MAX_RATE_ERROR = 0.02
MIN_DIVISOR = 4


def uart_divisor(clock_frequency, baud_rate):
    """Clock cycles per bit for ``baud_rate`` at ``clock_frequency`` (both in Hz).

    Raises
    ------
    TypeError, ValueError
        A rate is not a positive number, the divisor is below :data:`MIN_DIVISOR`, or the baud
        rate the divisor gives is more than :data:`MAX_RATE_ERROR` away from ``baud_rate``.
    """
    for name, value in (("clock_frequency", clock_frequency), ("baud_rate", baud_rate)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a positive number (Hz), not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be a positive number (Hz), not {value!r}")
    divisor = round(clock_frequency / baud_rate)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud_rate must be at most clock_frequency / {MIN_DIVISOR} = "
                         f"{clock_frequency / MIN_DIVISOR:g}, not {baud_rate!r}")
    error = abs(clock_frequency / divisor - baud_rate) / baud_rate
    if error > MAX_RATE_ERROR:
        raise ValueError(f"baud_rate must be within {MAX_RATE_ERROR:.0%} of clock_frequency / "
                         f"an integer; {baud_rate!r} is {error:.1%} away at clock_frequency "
                         f"{clock_frequency!r}")
    return divisor


def received_layout():
    """A received byte. ``framing_error``: its stop bit was low (line noise or a break).
    ``overrun``: one or more bytes before it were dropped because the consumer was not ready.
    """
    return data.StructLayout({"data": 8, "framing_error": 1, "overrun": 1})


class UARTReceiver(wiring.Component):
    """8N1 receiver: samples each bit in its middle, gives each byte as one stream beat.

    Parameters
    ----------
    clock_frequency, baud_rate : int or float
        In Hz; see :func:`uart_divisor`.

    Members
    -------
    rx : ``In(1)``
        The serial line, idle high; asynchronous (synchronised inside by two flip-flops).
    received : ``Out(stream.Signature(received_layout()))``
        One beat per byte, given in the middle of its stop bit, held until taken. A byte
        that completes while the previous one is still untaken is dropped and the next byte
        given carries ``overrun``.

    A start bit shorter than half a bit is ignored. After a character whose stop bit is low,
    the receiver waits for the line to go high before it looks for the next start bit, so a
    line held low gives one byte (with ``framing_error``), not a stream of them.

    Latency: the byte is valid 2 cycles (synchroniser) after the middle of its stop bit.

    Raises
    ------
    TypeError, ValueError
        As :func:`uart_divisor`.
    """

    def __init__(self, *, clock_frequency, baud_rate):
        self.divisor = uart_divisor(clock_frequency, baud_rate)
        super().__init__({
            "rx": In(1, init=1),
            "received": Out(stream.Signature(received_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        # Two flip-flops: the line is asynchronous to the clock.
        line_meta = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [line_meta.eq(self.rx), line.eq(line_meta)]

        count = Signal(range(divisor))
        # count == 0, kept as a register beside the counter (set from count == 1 as it counts
        # down): no comparator between the counter and the state logic.
        at_zero = Signal()
        bits = Signal(range(8))
        shifter = Signal(8)
        lost = Signal()

        with m.If(self.received.valid & self.received.ready):
            m.d.sync += self.received.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += [count.eq(divisor // 2 - 1), at_zero.eq(divisor // 2 - 1 == 0)]
                    m.next = "start"
            with m.State("start"):
                m.d.sync += [count.eq(count - 1), at_zero.eq(count == 1)]
                with m.If(at_zero):
                    with m.If(line):
                        m.next = "idle"      # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [count.eq(divisor - 1), at_zero.eq(divisor - 1 == 0),
                                     bits.eq(0)]
                        m.next = "data"
            with m.State("data"):
                m.d.sync += [count.eq(count - 1), at_zero.eq(count == 1)]
                with m.If(at_zero):
                    # LSB first: each bit enters at the top and moves down.
                    m.d.sync += [count.eq(divisor - 1), at_zero.eq(divisor - 1 == 0),
                                 shifter.eq(Cat(shifter[1:], line)), bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "stop"
            with m.State("stop"):
                m.d.sync += [count.eq(count - 1), at_zero.eq(count == 1)]
                with m.If(at_zero):
                    free = ~self.received.valid | self.received.ready
                    with m.If(free):
                        m.d.sync += [
                            self.received.valid.eq(1),
                            self.received.payload.data.eq(shifter),
                            self.received.payload.framing_error.eq(~line),
                            self.received.payload.overrun.eq(lost),
                            lost.eq(0),
                        ]
                    with m.Else():
                        m.d.sync += lost.eq(1)
                    with m.If(line):
                        m.next = "idle"
                    with m.Else():
                        m.next = "break"
            with m.State("break"):
                with m.If(line):
                    m.next = "idle"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter: one stream beat per byte, start bit, 8 data bits LSB first, stop bit.

    Parameters
    ----------
    clock_frequency, baud_rate : int or float
        In Hz; see :func:`uart_divisor`.

    Members
    -------
    send : ``In(stream.Signature(8))``
        Bytes to send; taken when the previous character's stop bit ends.
    tx : ``Out(1)``
        The serial line, idle high (registered).

    Throughput: one byte per ``10 * divisor + 1`` cycles.

    Raises
    ------
    TypeError, ValueError
        As :func:`uart_divisor`.
    """

    def __init__(self, *, clock_frequency, baud_rate):
        self.divisor = uart_divisor(clock_frequency, baud_rate)
        super().__init__({
            "send": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.divisor))
        at_zero = Signal()          # count == 0, as in the receiver
        bits_left = Signal(range(11))
        # Start bit, data, stop bit, shifted out from bit 0.
        shifter = Signal(10, init=1)

        m.d.comb += self.send.ready.eq(bits_left == 0)
        m.d.sync += self.tx.eq(shifter[0])
        with m.If(self.send.valid & self.send.ready):
            m.d.sync += [shifter.eq(Cat(Const(0, 1), self.send.payload, Const(1, 1))),
                         bits_left.eq(10), count.eq(self.divisor - 1),
                         at_zero.eq(self.divisor - 1 == 0)]
        with m.Elif(bits_left != 0):
            m.d.sync += [count.eq(count - 1), at_zero.eq(count == 1)]
            with m.If(at_zero):
                m.d.sync += [count.eq(self.divisor - 1), at_zero.eq(self.divisor - 1 == 0),
                             bits_left.eq(bits_left - 1),
                             shifter.eq(Cat(shifter[1:], Const(1, 1)))]
        return m
