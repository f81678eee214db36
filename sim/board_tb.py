"""Co-simulation of the board: :class:`~eventconv.hw.board.core.BoardCore` (UART, link, engine)
under cocotb, reached from the host driver through a byte-level bridge.

:class:`BoardSimulation` is a :class:`eventconv.host.transport.ByteTransport`: the driver's own
protocol code (:class:`eventconv.host.link.BoardLink`) runs unchanged in the pytest process and
its bytes travel over a local socket to the cocotb test below, which bit-bangs them onto the
design's ``rx`` line at the UART's rate and decodes its ``tx`` line. The simulation advances
only while the driver waits in ``read``, so a run is deterministic, and the transport's clock
is simulated time: ``read(timeout)`` waits ``timeout`` simulated seconds.
"""

import contextlib
import os
import secrets
import tempfile
import threading
from multiprocessing.connection import Client, Listener
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly
from cocotb.utils import get_sim_time

from eventconv.flow.verilog import ECP5_PRIMITIVES, ICE40_PRIMITIVES, export_verilog
from eventconv.host.transport import ByteTransport
from eventconv.hw.board.core import BoardCore
from eventconv.hw.target import GENERIC
from eventconv.protocol.codec import LinkError
from eventconv.protocol.constants import END
from eventconv.sim.case import read_case, write_result
from eventconv.sim.runner import ECP5_MODELS, ice40_models, run_cocotb, sigterm_unwinds
from eventconv.sim.streams import reset, start_clock

__all__ = ["BoardSimulation", "board_bridge", "CLOCK_PERIOD_NS"]

CLOCK_PERIOD_NS = 10


class BoardSimulation(ByteTransport):
    """A simulated board behind a byte transport.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config`
    baud_divisor : int
        Clock cycles per UART bit (the simulated clock is 100 MHz).
    timeout_cycles : int
        The link's packet timeout.
    chunk, window : int
        As :class:`~eventconv.hw.link.host_link.HostLink`.
    target : :class:`~eventconv.hw.target.Target`
        As :class:`~eventconv.hw.board.core.BoardCore`; the design then instantiates the
        primitives the family's board build does (SB_SPRAM256KA, MULT18X18D), simulated with
        their models.
    uploads : bool
        As :class:`~eventconv.hw.board.core.BoardCore`: weights in RAM, written over the link.
    simulator, build_root
        As :func:`eventconv.sim.runner.run_cocotb`.
    """

    def __init__(self, config, *, baud_divisor=8, timeout_cycles=3000, chunk=64, window=2,
                 simulator="icarus", build_root="build/sim", target=GENERIC, uploads=True):
        clock = 1e9 / CLOCK_PERIOD_NS
        core = BoardCore(config, clock_frequency=clock, baud_rate=clock / baud_divisor,
                         chunk=chunk, window=window, timeout_cycles=timeout_cycles,
                         target=target, uploads=uploads)
        self.byte_seconds = 10 * baud_divisor * CLOCK_PERIOD_NS * 1e-9
        # Gone in close(), and on SIGTERM too while the simulation is open.
        self._cleanup = contextlib.ExitStack()
        self._cleanup.enter_context(sigterm_unwinds())
        folder = self._cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix="eventconv-bridge-"))
        # The family's primitives where the target's board build has them, with their models.
        platform, models = None, ()
        if target.spram_accumulators:
            platform, models = ICE40_PRIMITIVES, ice40_models(folder)
        elif target.multiplier_registers:
            platform, models = ECP5_PRIMITIVES, ECP5_MODELS
        verilog = export_verilog(core, "eventconv_board", platform=platform)
        address = str(Path(folder) / "bridge")
        authkey = secrets.token_bytes(16)
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
        case = {"address": address, "authkey": authkey.hex(), "divisor": baud_divisor}
        self.result, self.failure = None, None

        def simulate():
            try:
                self.result = run_cocotb(
                    verilog_text=verilog, toplevel="eventconv_board",
                    test_module="eventconv.sim.board_tb", case=case, simulator=simulator,
                    build_root=build_root, extra_sources=models,
                    # The testbench drives the clock and the serial lines only.
                    public=[("eventconv_board", "*")])
            except BaseException as e:   # noqa: B036 - handed to the caller in close()
                self.failure = e
                try:   # unblock accept() if the simulation never connected
                    Client(address, family="AF_UNIX", authkey=authkey).close()
                except OSError:
                    pass

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        self._connection = listener.accept()
        listener.close()
        if self.failure is not None:
            self._thread.join()
            self._cleanup.close()
            raise LinkError(f"the board simulation did not start: {self.failure}")

    def _call(self, *request):
        try:
            self._connection.send(request)
            return self._connection.recv()
        except (EOFError, OSError) as e:
            self._thread.join()
            raise LinkError(f"the board simulation ended: {self.failure or e}") from None

    def write(self, data):
        self._call("write", bytes(data), None)

    def write_bad_stop_bit(self, data, index):
        """Send ``data`` with a low stop bit on byte ``index`` (line noise, a break)."""
        self._call("write", bytes(data), index)

    def read(self, timeout):
        return self._call("read", float(timeout))

    def now(self):
        """Simulated seconds."""
        return self._call("now")

    def close(self):
        if self._thread.is_alive():
            try:
                self._call("close")
            except LinkError:
                pass
            self._thread.join()
        self._cleanup.close()
        if self.failure is not None:
            raise self.failure


class HostLine:
    """The host end of the serial line: bytes to ``rx`` bits, ``tx`` bits to bytes."""

    def __init__(self, dut, divisor):
        self.dut, self.divisor = dut, divisor
        self.outgoing = []             # (byte, stop bit)
        self.received = bytearray()
        self.last_received_ns = 0.0
        self.framing_errors = 0
        dut.rx.value = 1
        cocotb.start_soon(self._send())
        cocotb.start_soon(self._receive())

    async def _send(self):
        while True:
            if not self.outgoing:
                await ClockCycles(self.dut.clk, self.divisor)
                continue
            byte, stop = self.outgoing.pop(0)
            for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
                self.dut.rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)
            self.dut.rx.value = 1

    async def _receive(self):
        half = self.divisor // 2
        while True:
            await FallingEdge(self.dut.tx)
            await ClockCycles(self.dut.clk, half)
            await ReadOnly()
            if int(self.dut.tx.value):
                continue                  # not a start bit
            byte = 0
            for i in range(8):
                await ClockCycles(self.dut.clk, self.divisor)
                await ReadOnly()
                byte |= int(self.dut.tx.value) << i
            await ClockCycles(self.dut.clk, self.divisor)
            await ReadOnly()
            if not int(self.dut.tx.value):
                self.framing_errors += 1
            self.received.append(byte)
            self.last_received_ns = get_sim_time("ns")

    def take(self):
        data = bytes(self.received)
        self.received.clear()
        return data


@cocotb.test()
async def board_bridge(dut):
    """Serve the pytest side's requests: write bytes, read bytes for a while, now, close."""
    case = read_case()
    divisor = case["divisor"]
    start_clock(dut, CLOCK_PERIOD_NS)
    line = HostLine(dut, divisor)
    await reset(dut)
    connection = Client(case["address"], family="AF_UNIX",
                        authkey=bytes.fromhex(case["authkey"]))
    byte_ns = 10 * divisor * CLOCK_PERIOD_NS
    served = 0
    while True:
        request = connection.recv()      # the simulation waits for the driver here
        served += 1
        if request[0] == "write":
            _, data, bad_stop = request
            line.outgoing += [(b, int(i != bad_stop)) for i, b in enumerate(data)]
            connection.send(None)
        elif request[0] == "read":
            deadline = get_sim_time("ns") + request[1] * 1e9
            # Until a packet has ended (or bytes stopped coming for 2 byte times), or until
            # the deadline: hands the driver whole packets most of the time.
            while True:
                now = get_sim_time("ns")
                if line.received and (line.received[-1] == END or
                                      now - line.last_received_ns >= 2 * byte_ns):
                    break
                if now >= deadline:
                    break
                await ClockCycles(dut.clk, divisor * 10)
            connection.send(line.take())
        elif request[0] == "now":
            connection.send(get_sim_time("ns") * 1e-9)
        else:
            connection.send(None)
            break
    connection.close()
    write_result({"requests": served, "framing_errors": line.framing_errors,
                  "simulated_ns": get_sim_time("ns"),
                  "pid": os.getpid()})
