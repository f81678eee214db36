"""The event word: the fields of an event as the hardware packs them, from bit 0 up.

Input events (from the delta detector) and output events (from the pool, with the pooled
height and width) share this form, so a further layer can take a layer's output. The gateware
builds its stream layout from :func:`event_fields`; the host protocol decodes EVENT packets
with it.
"""

__all__ = ["DELTA_WIDTH", "bits_for_count", "event_fields"]

# A delta of two uint8 values, and of two pooled uint8 values: -255..255, signed.
DELTA_WIDTH = 9


def bits_for_count(count):
    """Unsigned width that can index ``count`` items (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def event_fields(channels, height, width):
    """``[(name, width, signed), ...]`` of an event ``(channel, y, x, delta)`` and its
    ``end_of_frame`` flag, in packing order from bit 0."""
    return [("channel", bits_for_count(channels), False),
            ("y", bits_for_count(height), False),
            ("x", bits_for_count(width), False),
            ("delta", DELTA_WIDTH, True),
            ("end_of_frame", 1, False)]
