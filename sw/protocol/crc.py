"""CRC-16/CCITT-FALSE, the protocol's checksum."""

from eventconv.protocol.constants import CRC_INIT, CRC_POLY

__all__ = ["crc16"]


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no final xor).

    Appending the result high byte first makes the CRC of the whole 0: that is the check.
    """
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
