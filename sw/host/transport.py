"""Byte transports to a board: the interface, and a serial port through pyserial."""

from eventconv.protocol.codec import LinkError
from eventconv.protocol.constants import DEFAULT_BAUD_RATE

__all__ = ["ByteTransport", "SerialTransport"]


class ByteTransport:
    """Bytes to and from the board. ``read(timeout)`` returns what arrived, waiting up to
    ``timeout`` seconds (of the transport's clock: wall time for a serial port, simulated time
    for the co-simulation) for at least one byte; ``b""`` when nothing came."""

    def write(self, data):
        raise NotImplementedError

    def read(self, timeout):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(ByteTransport):
    """A serial port through pyserial (8N1, no flow control)."""

    def __init__(self, port, baud_rate=DEFAULT_BAUD_RATE):
        import serial
        try:
            # A device path, or any pyserial URL (socket://, rfc2217://).
            self.serial = serial.serial_for_url(port, baud_rate, timeout=0, write_timeout=10)
        except (serial.SerialException, ValueError) as e:
            raise LinkError(f"cannot open serial port {port}: {e}") from None
        self.serial.reset_input_buffer()

    def write(self, data):
        self.serial.write(data)

    def read(self, timeout):
        self.serial.timeout = timeout
        first = self.serial.read(1)
        if not first:
            return b""
        return first + self.serial.read(self.serial.in_waiting)

    def close(self):
        self.serial.close()
