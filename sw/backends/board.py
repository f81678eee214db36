"""``eventconv run --backend board``: frames through a board over its serial port."""

import sys

from eventconv.backends.integrate import integrate as integrate_events
from eventconv.backends.rtl import default_build_root
from eventconv.host.link import BoardLink
from eventconv.host.transport import SerialTransport
from eventconv.hw.boards import board_named
from eventconv.protocol.codec import LinkError, as_network
from eventconv.protocol.constants import DEFAULT_BAUD_RATE
from eventconv.sim.board_tb import CLOCK_PERIOD_NS, BoardSimulation
from eventconv.sim.runner import check_simulator

#: ``--port sim``: the board's gateware simulated behind the driver.
SIMULATED_PORT = "sim"
#: A serial port's timeout (seconds without the answer or output awaited) and the driver's
#: retries (:class:`~eventconv.host.link.BoardLink`): a port that never answers ends the run
#: after (RETRIES + 1) * TIMEOUT, a board silent mid-run after STALLS_PER_RETRY times that.
TIMEOUT, RETRIES = 1.0, 10

__all__ = ["run", "integrate", "SIMULATED_PORT", "TIMEOUT", "RETRIES"]


def integrate(config, results):
    """OUT.npz arrays from the board's per-frame results (see :func:`.integrate.integrate`).

    The contract gives ``cycles`` for a network on the board, not for the one-layer form
    (rtl backend only), whose OUT.npz stays as it was.
    """
    network = as_network(config)
    frames = [{"events": r["events"],
               **{k: list(r[k]) for k in ("events_in", "events_out", "macs")},
               **({} if network.single else {"cycles": r["cycles"]})} for r in results]
    try:
        return integrate_events(network, frames)
    except ValueError as e:
        raise LinkError(str(e)) from None


def run(config, frames, *, port=None, baud_rate=DEFAULT_BAUD_RATE, progress=False,
        timeout=None, transport=None, simulator="icarus", build_root=None, board=None):
    """``eventconv run --backend board``: the clip through a board on serial ``port``.

    Returns OUT.npz's arrays (``pooled``, ``events_in``, ``events_out``, ``macs``); the pooled
    maps integrate the output events the board gave. ``transport`` (any
    :class:`~eventconv.host.transport.ByteTransport`, e.g. the co-simulation) replaces the
    serial port. ``port`` :data:`SIMULATED_PORT` is the board's gateware (UART, host link,
    engine: :class:`~eventconv.hw.board.core.BoardCore`) built for ``config`` and simulated
    under ``simulator`` behind the same driver; the timeout is then simulated time. With
    ``board`` (a name in :data:`~eventconv.hw.boards.BOARDS`) it is instead that board's own
    build, as ``make synth`` makes it: its default network, family target and uploads, so the
    configuration must have the bitstream's shape (and, without uploads, its weights).
    ``timeout`` defaults to :data:`TIMEOUT`. What the driver recovers from that the user
    should know of (a board reset) is noted on stderr with the progress.
    """
    network = as_network(config)
    network.check_frames(frames)   # refuse bad frames before opening the port

    def show(done, total):
        bar = "#" * (30 * done // total)
        print(f"\rboard: [{bar:<30}] {done}/{total} frames", end="", file=sys.stderr,
              flush=True)

    def note(text):
        print(f"\nboard: {text}", file=sys.stderr, flush=True)

    def drive(transport, timeout):
        link = BoardLink(transport, network, timeout=TIMEOUT if timeout is None else timeout,
                         retries=RETRIES, report=note if progress else None)
        try:
            return link.run(frames, progress=show if progress else None)
        except LinkError:
            if progress:
                print(file=sys.stderr)   # the error's line below the progress bar
            raise

    if transport is not None:
        results = drive(transport, timeout)
    elif port == SIMULATED_PORT:
        check_simulator(simulator)
        simulated = BoardSimulation(**simulated_board(network, board), simulator=simulator,
                                    build_root=build_root or default_build_root())
        try:
            results = drive(simulated, simulated_timeout(network))
        finally:
            simulated.close()
    else:
        with SerialTransport(port, baud_rate) as serial_port:
            results = drive(serial_port, timeout)
    if progress:
        print(file=sys.stderr)
    return integrate(network, results)


def simulated_board(network, board=None):
    """:class:`BoardSimulation`'s design arguments: gateware built for ``network``, or the
    named board's own build."""
    if board is None:
        return {"config": network}
    spec = board_named(board)
    return {"config": spec.default_config(), "target": spec.target, "uploads": spec.uploads}


def simulated_timeout(config):
    """Simulated seconds of silence before the driver resynchronises: well above a dense
    frame's work (every layer's), which the engine may spend before its first event
    leaves."""
    work = sum(c.height * c.width * c.channels_in * (1 + c.channels_out * c.kernel_size ** 2
                                                      // c.lanes) + c.channels_out * c.height
               * c.width for c in as_network(config).layers)
    return max(300e-6, 4 * work * CLOCK_PERIOD_NS * 1e-9)
