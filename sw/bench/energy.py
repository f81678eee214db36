"""Energy estimate of one layer per frame, from operation counts and a published energy table.

The table is Horowitz's, for a 45 nm process at 0.9 V: M. Horowitz, "Computing's energy problem
(and what we can do about it)", IEEE ISSCC 2014, Digest of Technical Papers, pp. 10-14,
doi:10.1109/ISSCC.2014.6757323 (figure "Rough energy costs for various operations in 45 nm").

The estimate counts the arithmetic and the memory traffic of the engine's datapath, stage by
stage, the way the RTL is built (``hw/``). It is a *relative* figure for comparing event mode
with dense mode of the same design: absolute FPGA energy is dominated by static power, clock
tree and routing, which no operation table captures.

What is counted, per frame (``N = H * W * Cin`` input samples, ``macs`` accumulate ops,
``taps = macs / Cout``, ``windows`` pooled 2 x 2 windows the pool re-evaluates, ``events_out``
output events, ``A`` the accumulator width in bits, ``Cout`` output channels):

Delta detector (every sample is scanned in both modes):
    * ``N`` reference reads of 8 bits: the old value ``r`` of every sample.
    * ``N`` 8-bit adds: the difference ``d = x - r`` (9-bit result, charged as an 8-bit add).
    * ``N`` 8-bit compares ``|d| > T``: a compare is a subtract, charged as an 8-bit add.
    * ``events_in`` reference writes of 8 bits: ``r = x`` only where an event fires
      (dense mode: every sample is an event, so ``N`` writes).

Fan-out and accumulate (one accumulate op = one ``(o, tap)`` of one event):
    * ``macs`` weight reads of 8 bits: each op reads its weight ``w[o][c][ky][kx]`` from the
      lane's weight ROM (charged as SRAM: an upper bound for a ROM of 9 * Cin * Cout bytes).
    * ``macs`` 8-bit multiplies ``d * w`` (9 x 8 bits in the RTL, one DSP).
    * ``macs`` accumulator reads and ``macs`` accumulator writes of ``A`` bits each: the
      read-modify-write of ``acc[o][oy][ox]``.
    * ``macs`` adds of ``A`` bits, charged as 32-bit adds (``A <= 32``; an upper bound).
    * ``2 * taps`` 8-bit adds: the output position ``(y - ky + K//2, x - kx + K//2)`` of every
      in-frame tap (once per tap, shared by the Cout ops of that tap).

Sparse max pool (per re-evaluated window; the pool lists every window holding an accumulator
updated in this frame once, so dense mode re-evaluates all ``H/2 * W/2`` windows):
    * ``4 * Cout`` accumulator reads of ``A`` bits: the four accumulators of every channel.
    * ``3 * Cout`` compares of ``A`` bits, charged as 32-bit adds: the 2 x 2 maximum, taken
      on the raw accumulators (requantizing is monotonic, so the RTL pools first).
    * ``Cout`` 8-bit compares: requantize ``min(255, max(0, acc) >> s)`` of the maximum (the
      ReLU is the sign bit and the shift is wiring; the clamp to 255 is one compare).
    * ``Cout`` reads of 8 bits of the last pooled value ``P``, and ``Cout`` 8-bit adds for
      ``P_t - P_{t-1}`` (the change test and the output event's delta in one subtract).
    * ``events_out`` writes of 8 bits: ``P`` is written where it changed.

Memory energy is charged per bit: the table's 8 KB SRAM 64-bit read, 10 pJ, is 10/64 pJ per
bit, and a write is charged like a read. Every memory of the benchmark layer is of that size
class or smaller (reference 3 KB, pooled map 6 KB, each lane's accumulators
``Cout/lanes * H * W * A`` bits: 6.5 KB for 64 x 48, 8 lanes, A = 17, themselves split into
banks); a larger monolithic memory costs more per bit (32 KB: 20 pJ), so with few lanes these
figures are lower bounds. The counts do not depend on lanes or pixels per clock: those knobs
change how many of these operations run in the same cycle, not how many there are.

Not counted: control, counters, FSMs, stream handshakes, FIFOs, the touched-window bookkeeping
(a few bits per window), clocking and static power.
"""

from dataclasses import dataclass

import numpy as np

from eventconv.core.model import EventConvModel, taps_in_frame

__all__ = ["ENERGY_PJ", "REFERENCE", "OperationCounts", "count_operations", "touched_windows",
           "hit_windows",
           "energy_per_frame", "CATEGORIES"]

REFERENCE = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
             "IEEE ISSCC 2014, pp. 10-14, doi:10.1109/ISSCC.2014.6757323 (45 nm, 0.9 V)")

#: Energy per operation in pJ (Horowitz, ISSCC 2014, 45 nm).
ENERGY_PJ = {
    "add8": 0.03,            # 8-bit integer add
    "add32": 0.1,            # 32-bit integer add
    "mult8": 0.2,            # 8-bit integer multiply
    "sram_bit": 10.0 / 64,   # 8 KB SRAM, 64-bit read: 10 pJ
}

#: Energy categories of :func:`energy_per_frame`, in plotting order.
CATEGORIES = ("detector arithmetic", "detector memory", "accumulate arithmetic",
              "accumulate memory", "pool arithmetic", "pool memory")


@dataclass
class OperationCounts:
    """Per-frame operation counts (int64 arrays of shape (T,)) and the layer's constants."""

    samples: np.ndarray      # N = H * W * Cin, scanned by the detector
    events_in: np.ndarray    # delta events (reference writes)
    macs: np.ndarray         # accumulate ops
    taps: np.ndarray         # in-frame taps of all events: macs / Cout
    windows: np.ndarray      # pooled windows re-evaluated
    events_out: np.ndarray   # pooled values that changed (pooled-map writes)
    channels_out: int
    accumulator_width: int


def hit_windows(config, events):
    """The 2 x 2 pool windows (bool (H/2, W/2)) holding at least one accumulator that
    ``events`` update.

    An event at (y, x) updates the accumulators at (y - ky + K//2, x - kx + K//2), all
    channels, for the in-frame taps: the K x K neighbourhood of (y, x) clipped to the frame.
    """
    h, w, p = config.height, config.width, config.pad
    hit = np.zeros((h + 2 * p, w + 2 * p), bool)
    fired = np.zeros((h, w), bool)
    fired[events.y, events.x] = True
    for dy in range(config.kernel_size):
        for dx in range(config.kernel_size):
            hit[dy:dy + h, dx:dx + w] |= fired
    return hit[p:p + h, p:p + w].reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))


def touched_windows(config, events):
    """Number of 2 x 2 pool windows holding at least one accumulator that ``events`` update
    (:func:`hit_windows`)."""
    return int(hit_windows(config, events).sum())


def count_operations(config, frames):
    """Run the golden model over ``frames`` (SPEC layout) and count every frame's operations.

    Returns ``(counts, pooled)``: an :class:`OperationCounts` and the pooled maps, uint8
    (T, Cout, H/2, W/2). The mode and threshold are the configuration's.
    """
    frames = config.check_frames(frames)
    model = EventConvModel(config)
    taps_map = taps_in_frame(config)
    rows, pooled = [], []
    for frame in frames:
        result = model.step(frame)
        events = result.input_events
        taps = int(taps_map[events.y, events.x].sum())
        rows.append((frame.size, result.events_in, result.macs, taps,
                     touched_windows(config, events), result.events_out))
        pooled.append(result.pooled)
    table = np.array(rows, dtype=np.int64).reshape(-1, 6)
    counts = OperationCounts(*table.T, channels_out=config.channels_out,
                             accumulator_width=config.accumulator_width)
    return counts, np.stack(pooled)


def energy_per_frame(counts: OperationCounts, table=None):
    """Energy of every frame in pJ, by category: dict name -> float array (T,), plus "total".

    The derivation of every term is in this module's docstring.
    """
    e = {**ENERGY_PJ, **(table or {})}
    cout, acc = counts.channels_out, counts.accumulator_width
    n, ev, macs, taps, win, out = (counts.samples, counts.events_in, counts.macs, counts.taps,
                                   counts.windows, counts.events_out)
    bit = e["sram_bit"]
    energy = {
        "detector arithmetic": (n + n) * e["add8"],
        "detector memory": (8 * n + 8 * ev) * bit,
        "accumulate arithmetic": macs * (e["mult8"] + e["add32"]) + 2 * taps * e["add8"],
        "accumulate memory": macs * (8 + 2 * acc) * bit,
        "pool arithmetic": win * cout * (3 * e["add32"] + 2 * e["add8"]),
        "pool memory": (win * cout * (4 * acc + 8) + 8 * out) * bit,
    }
    energy = {k: np.asarray(v, dtype=np.float64) for k, v in energy.items()}
    energy["total"] = sum(energy[k] for k in CATEGORIES)
    return energy
