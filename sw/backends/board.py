"""``eventconv run --backend board``: frames through a board over its serial port."""

import sys

from eventconv.backends.integrate import integrate as integrate_events
from eventconv.host.link import BoardLink
from eventconv.host.transport import SerialTransport
from eventconv.protocol.codec import LinkError
from eventconv.protocol.constants import DEFAULT_BAUD_RATE

__all__ = ["run", "integrate"]


def integrate(config, results):
    """OUT.npz arrays from the board's per-frame results (see :func:`.integrate.integrate`).

    The contract gives ``cycles`` for the rtl backend only, so the board's cycle counts stay
    out.
    """
    keys = ("events", "events_in", "events_out", "macs")
    try:
        return integrate_events(config, [{k: r[k] for k in keys} for r in results])
    except ValueError as e:
        raise LinkError(str(e)) from None


def run(config, frames, *, port=None, baud_rate=DEFAULT_BAUD_RATE, progress=False,
              timeout=1.0, transport=None):
    """``eventconv run --backend board``: the clip through a board on serial ``port``.

    Returns OUT.npz's arrays (``pooled``, ``events_in``, ``events_out``, ``macs``); the pooled
    maps integrate the output events the board gave. ``transport`` (any
    :class:`~eventconv.host.transport.ByteTransport`, e.g. the co-simulation) replaces the
    serial port.
    """
    config.check_frames(frames)   # refuse bad frames before opening the port

    def show(done, total):
        bar = "#" * (30 * done // total)
        print(f"\rboard: [{bar:<30}] {done}/{total} frames", end="", file=sys.stderr,
              flush=True)

    if transport is None:
        with SerialTransport(port, baud_rate) as serial_port:
            link = BoardLink(serial_port, config, timeout=timeout)
            results = link.run(frames, progress=show if progress else None)
    else:
        link = BoardLink(transport, config, timeout=timeout)
        results = link.run(frames, progress=show if progress else None)
    if progress:
        print(file=sys.stderr)
    return integrate(config, results)
