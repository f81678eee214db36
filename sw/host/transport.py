"""Byte transports to a board: the interface, and a serial port through pyserial."""

import time

from eventconv.protocol.codec import LinkError
from eventconv.protocol.constants import DEFAULT_BAUD_RATE

__all__ = ["ByteTransport", "SerialTransport"]


class ByteTransport:
    """Bytes to and from the board. ``read(timeout)`` returns what arrived, waiting up to
    ``timeout`` seconds (of the transport's clock: wall time for a serial port, simulated time
    for the co-simulation) for at least one byte; ``b""`` when nothing came. ``now()`` is that
    clock, in seconds: the driver's deadlines are measured on it."""

    def write(self, data):
        raise NotImplementedError

    def read(self, timeout):
        raise NotImplementedError

    def now(self):
        return time.monotonic()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(ByteTransport):
    """A serial port through pyserial (8N1, no flow control). A port that fails (unplugged,
    closed by the other end, a write blocked for 10 s) raises :class:`LinkError`."""

    def __init__(self, port, baud_rate=DEFAULT_BAUD_RATE):
        import serial
        self._errors = (serial.SerialException, OSError)
        self.port = port
        try:
            # A device path, or any pyserial URL (socket://, rfc2217://).
            self.serial = serial.serial_for_url(port, baud_rate, timeout=0, write_timeout=10)
            self.serial.reset_input_buffer()
        except (*self._errors, ValueError) as e:
            raise LinkError(f"cannot open serial port {port}: {e}") from None

    def _failed(self, e):
        return LinkError(f"serial port {self.port} failed: {e}".replace("\n", " "))

    def write(self, data):
        try:
            self.serial.write(data)
        except self._errors as e:
            raise self._failed(e) from None

    def read(self, timeout):
        try:
            self.serial.timeout = max(0.0, timeout)
            first = self.serial.read(1)
            if not first:
                return b""
            return first + self.serial.read(self.serial.in_waiting)
        except self._errors as e:
            raise self._failed(e) from None

    def close(self):
        try:
            self.serial.close()
        except self._errors:
            pass
