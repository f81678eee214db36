"""Every formal check of the project: the proofs, their cover checks (the assumptions leave the
interesting behaviour reachable), and the planted bugs each proof must catch.

``quick`` marks the subset that runs in the normal test suite (tests/test_formal.py); ``make
formal`` runs them all. A planted bug is checked in ``bmc`` mode without the lemmas (the
internal invariants that only make the induction close): it must break one of the stated
properties, in a trace from the initial state, not only an invariant about its registers.
"""

from amaranth.hdl import unsigned

from eventconv.hw.layer.accumulator_spram import SpramAccumulatorUnit
from eventconv.hw.layouts import event_layout
from eventconv.sim.formal import (
    accumulator,
    delta_detector,
    engine,
    fanout,
    pool_early,
    sparse_max_pool,
    stream_register,
)
from eventconv.sim.formal.runner import Check

__all__ = ["CHECKS", "by_name"]


def _stream_register_checks():
    checks = []
    for skid in (False, True):
        suffix = "skid_loads_when_empty" if skid else "plain"
        checks.append(Check(
            f"stream_register.{suffix}", stream_register.StreamRegisterProof(
                skid_loads_when_empty=skid), "prove", 3, quick=True,
            what="protocol on o; beats out = beats in, in order, unchanged"))
    checks.append(Check(
        "stream_register.event_layout", stream_register.StreamRegisterProof(
            event_layout(4, 8, 8), skid_loads_when_empty=True), "prove", 3,
        what="the same over the 25-bit event payload"))
    checks.append(Check("stream_register.cover", stream_register.StreamRegisterProof(),
                        "cover", 8, quick=True, what="two beats held; the picked beat out"))
    for skid in (False, True):
        for bug in stream_register.BUGS:
            def block(bug=bug, skid=skid):
                return stream_register.BuggyStreamRegister(unsigned(3), bug,
                                                           skid_loads_when_empty=skid)
            checks.append(Check(
                f"stream_register.bug.{bug}{'.skid_loads_when_empty' if skid else ''}",
                stream_register.StreamRegisterProof(block=block, lemmas=False), "bmc", 6,
                expect="FAIL", quick=not skid, what=stream_register.BUGS[bug]))
    return checks


#: Fan-out geometries: (name, parameters, quick).
FANOUT_GEOMETRIES = [
    ("k3", dict(height=4, width=4, kernel_size=3, channels_in=2, channels_out=2, lanes=1),
     True),
    ("k1", dict(height=2, width=2, kernel_size=1, channels_in=1, channels_out=1, lanes=1),
     True),
    ("k3_lanes2", dict(height=4, width=6, kernel_size=3, channels_in=3, channels_out=4,
                       lanes=2), False),
    ("k5", dict(height=6, width=6, kernel_size=5, channels_in=1, channels_out=1, lanes=1),
     False),
    ("k7", dict(height=8, width=8, kernel_size=7, channels_in=2, channels_out=2, lanes=1),
     False),
]


def _fanout_checks():
    checks = []
    for name, params, quick in FANOUT_GEOMETRIES:
        checks.append(Check(
            f"fanout.{name}", fanout.FanoutProof(**params), "prove", 2, quick=quick,
            what="protocol on updates; each event's beats = its in-frame taps x groups, each "
                 "right and once; end of frame one beat; none without an event; drain bound"))
    params = FANOUT_GEOMETRIES[0][1]
    checks.append(Check("fanout.cover", fanout.FanoutProof(**params), "cover", 24,
                        what="a whole interior event (18 beats) given; an end-of-frame beat"))
    for bug in fanout.BUGS:
        checks.append(Check(
            f"fanout.bug.{bug}", fanout.FanoutProof(
                block=lambda bug=bug: fanout.buggy_fanout(bug, **params), lemmas=False),
            "bmc", 12, expect="FAIL", quick=True, what=fanout.BUGS[bug]))
    return checks


def _delta_detector_checks():
    # Bounded: smtbmc's time per step grows about fourfold past step 16 here (the pipeline,
    # queue and credits have no lemmas for an induction). ``--nopresat``: the cover check
    # shows the assumptions leave traces.
    proof = delta_detector.DeltaDetectorProof
    nopresat = ("--nopresat",)
    checks = [
        Check("delta_detector.frames", proof(variant="frames"), "bmc", 20, options=nopresat,
              what="any data and threshold, whole frames: protocol on events; one end of "
                   "frame per last beat, none else, none lost; a frame's events in raster "
                   "order, each sample at most once"),
        Check("delta_detector.frames_quick", proof(variant="frames"), "bmc", 14,
              options=nopresat, quick=True, what="the same, to 14 cycles"),
        Check("delta_detector.dense", proof(variant="dense"), "bmc", 16, options=nopresat,
              what="dense mode, any data: every beat's events (channel, y, x, delta against "
                   "the reference) in lane order, then its end of frame; none without a beat"),
        Check("delta_detector.event", proof(variant="event"), "bmc", 16, options=nopresat,
              what="event mode, samples and threshold in 0..3: the same"),
        Check("delta_detector.cover", proof(variant="dense"), "cover", 16,
              what="a last beat whose sample fired, its event and end of frame given"),
    ]
    # (variant, depth) that shows each bug: a beat must sit in the queue for queue_stuck.
    shown_by = {"no_eof": ("frames", 14), "queue_stuck": ("frames", 16),
                "threshold_ge": ("event", 14)}
    for bug, (what, patch) in delta_detector.BUGS.items():
        variant, depth = shown_by[bug]
        checks.append(Check(f"delta_detector.bug.{bug}", proof(variant=variant, patch=patch),
                            "bmc", depth, options=nopresat, expect="FAIL", quick=True,
                            what=what))
    return checks


def _accumulator_checks():
    # The stream rule closes by induction alone (TouchedOutput's registers). The sums and the
    # frame handshake are bounded: smtbmc's time per step grows about fivefold a step past
    # step 13 (2 x 2, one lane; past step 11 with two lanes); the read-modify-write pipeline,
    # forwarding and memories have no lemmas for an induction. A 2 x 2 frame's updates are
    # read back from step 11 on (clear, updates, end of frame, the pipeline's 6 cycles).
    proof = accumulator.AccumulatorProof
    nopresat = ("--nopresat",)
    checks = [
        Check("accumulator.protocol", proof("2x2", parts=()), "prove", 2, quick=True,
              what="protocol on touched (valid and window held until taken), any ready"),
        Check("accumulator.protocol_lanes2", proof("2x2_lanes2", parts=()), "prove", 2,
              what="the same, two lanes"),
        Check("accumulator.protocol_k3", proof("4x4_k3", parts=()), "prove", 2,
              what="the same, 4 x 4, K = 3, two groups"),
        Check("accumulator.sums", proof("2x2"), "bmc", 14, options=nopresat,
              what="2 x 2: the words read back = bias + every update taken, delta * weight "
                   "(none lost or doubled); one end of frame per frame, after its windows; "
                   "updates closed until done; none lost; protocol"),
        Check("accumulator.sums_quick", proof("2x2"), "bmc", 12, options=nopresat,
              quick=True, what="the same, to 12 cycles (one frame read back)"),
        Check("accumulator.sums_lanes2", proof("2x2_lanes2"), "bmc", 12, options=nopresat,
              what="the same, two lanes, two input channels"),
        Check("accumulator.windows_k3", proof("4x4_k3", parts=("frames", "windows")), "bmc",
              24, options=nopresat,
              what="4 x 4, K = 3, two groups: windows and ends of frame, handshake, none lost"),
        Check("accumulator.cover", proof("2x2"), "cover", 14,
              what="two accumulators read back changed by updates"),
    ]
    for bug, (what, patch) in accumulator.BUGS.items():
        checks.append(Check(f"accumulator.bug.{bug}", proof("2x2", patch=patch), "bmc", 12,
                            options=nopresat, expect="FAIL", quick=True, what=what))
    return checks + _spram_accumulator_checks()


#: Bounded depth of the SPRAM unit's checks: clear (4 words), two beats (two cycles each), the
#: end of frame, the 5-stage pipeline and one paced read (5 cycles) on a 2 x 2 frame.
SPRAM_BMC_DEPTH = 20


def _spram_accumulator_checks():
    # The same proof over SpramAccumulatorUnit (single-port RAM, beats every second cycle,
    # paced reads); its RAM is the Amaranth memory SinglePortRam gives off the iCE40.
    def proof(geometry, **kwargs):
        return accumulator.AccumulatorProof(geometry, unit=SpramAccumulatorUnit, **kwargs)

    nopresat = ("--nopresat",)
    checks = [
        Check("accumulator_spram.protocol", proof("2x2", parts=()), "prove", 2, quick=True,
              what="protocol on touched, any ready (single-port RAM unit)"),
        Check("accumulator_spram.protocol_k3", proof("4x4_k3", parts=()), "prove", 2,
              what="the same, 4 x 4, K = 3, two groups"),
        Check("accumulator_spram.sums", proof("2x2"), "bmc", SPRAM_BMC_DEPTH, options=nopresat,
              quick=True,
              what="2 x 2: the words read back (paced) = bias + every update taken, delta * "
                   "weight; one end of frame per frame, after its windows; updates closed "
                   "until done; none lost; protocol"),
        Check("accumulator_spram.sums_lanes2", proof("2x2_lanes2"), "bmc", SPRAM_BMC_DEPTH,
              options=nopresat, what="the same, two lanes, two input channels"),
        Check("accumulator_spram.cover", proof("2x2"), "cover", SPRAM_BMC_DEPTH,
              what="two accumulators read back changed by updates"),
    ]
    for bug, (what, patch) in accumulator.SPRAM_BUGS.items():
        checks.append(Check(f"accumulator_spram.bug.{bug}", proof("2x2", patch=patch), "bmc",
                            SPRAM_BMC_DEPTH, options=nopresat, expect="FAIL", quick=True,
                            what=what))
    return checks


#: Pool checks: (geometry, target[, depth]), named by the geometry ("_ecp5" for that target).
#: Each bounded depth reaches past a second frame's end of frame after the priming frame (the
#: cover step of that end of frame: 26 on 2 x 4, 27 ECP5, 30 with two groups, 26 with two
#: lanes, 28 on 2 x 6, 32 on 2 x 2 with pool 1, 33 ECP5), except windows on 2 x 4 with pool 1
#: (four reads a window; 36 reaches the second frame's reads done, at 32, not its events, at
#: 37: deeper takes minutes); latency, the second frame timed from its own end of frame (28
#: on 2 x 4, 30 ECP5, 33 with two groups, 35 on 2 x 2 with pool 1, 37 ECP5).
POOL_FRAMES = [("2x4", "generic"), ("2x4", "ecp5"), ("2x4_groups2", "generic"),
               ("2x4_lanes2", "generic"), ("2x4_lanes2", "ecp5"), ("2x6", "generic"),
               ("2x2_pool1", "generic"), ("2x2_pool1", "ecp5")]
POOL_WINDOWS = [("2x4", "generic", 34), ("2x4", "ecp5", 34), ("2x4_groups2", "generic", 34),
                ("2x4_lanes2", "generic", 32), ("2x6", "generic", 32),
                ("2x2_pool1", "generic", 34), ("2x2_pool1", "ecp5", 34),
                ("2x4_pool1", "generic", 36)]
POOL_LATENCY = [("2x4", "generic", 32), ("2x4", "ecp5", 34), ("2x4_groups2", "generic", 38),
                ("2x4_lanes2", "generic", 32), ("2x2_pool1", "generic", 40),
                ("2x2_pool1", "ecp5", 40)]


def _sparse_max_pool_checks():
    # The frame and read handshakes close by induction (the control's lemmas, depth 2). The
    # windows and the cycle counts are bounded: no lemmas for the bitmap, the window list and
    # the stored values (depths above). ``memory_map``: the pool's small memories as
    # flip-flops (smtbmc's arrays: about ten times slower at depth 22 on 2 x 4).
    proof = sparse_max_pool.SparseMaxPoolProof
    common = dict(options=("--nopresat",), script=("memory_map",))
    what = {
        "frames": lambda depth: (
            "induction, depth 2: protocol on events; one end of frame out per end of frame "
            "taken, in order, at most 3 in flight, none and no event before its frame's is "
            "taken; read.en only from a touched end of frame to done, done once per frame and "
            "before the frame's end of frame out, touched closed meanwhile"),
        "windows": lambda depth: (
            f"bounded, depth {depth}: protocol on events; an event only for a window touched "
            "in its frame (the first after reset: all); each (channel, y, x) once a frame; a "
            "frame's reads = its windows touched x groups, each once (pool 1: four in a row)"),
        "latency": lambda depth: (
            f"bounded, depth {depth}, events.ready high: end of frame out max(G + 11, E + 12) "
            "to G + E + 12 cycles after the touched one (ECP5 + 2; 4 without reads, ECP5 5), "
            "G + E + 10 (ECP5 12) after the previous one's if queued; one lane: done G + 3 "
            "(ECP5 G + 5) after"),
    }
    runs = ([("frames", g, t, "prove", 2) for g, t in POOL_FRAMES]
            + [("windows", g, t, "bmc", d) for g, t, d in POOL_WINDOWS]
            + [("latency", g, t, "bmc", d) for g, t, d in POOL_LATENCY])
    checks = []
    for part, geometry, target, mode, depth in runs:
        checks.append(Check(
            f"sparse_max_pool.{part}.{geometry}{'_ecp5' if target == 'ecp5' else ''}",
            proof(geometry, target=target, parts=(part,)), mode, depth,
            **(common if mode == "bmc" else {"script": common["script"]}),
            quick=(part, geometry, target) == ("frames", "2x4", "generic"),
            what=what[part](depth)))
    checks += [
        Check("sparse_max_pool.cover", proof("2x4", parts=("frames", "windows")), "cover",
              28, script=("memory_map",),
              what="three frames in flight; a second frame's reads done and its events"),
        Check("sparse_max_pool.cover_latency", proof("2x4", parts=("latency",)), "cover", 30,
              script=("memory_map",),
              what="ready high: frames timed from their own and from the previous end of "
                   "frame"),
    ]
    # (geometry, target, parts, depth) that shows each bug.
    shown_by = {"valid_drops": ("2x2", "generic", ("frames",), 16),
                "eof_early": ("2x2", "generic", ("frames",), 16),
                "done_early": ("2x4", "generic", ("frames",), 8),
                "event_twice": ("2x2_lanes2", "generic", ("windows",), 18),
                "no_forwarding": ("2x4", "generic", ("windows",), 18),
                "forwarding_one_back": ("2x4", "ecp5", ("windows",), 20),
                "stale_bitmap": ("2x4", "generic", ("windows",), 18),
                "event_window_early": ("2x4", "generic", ("windows",), 28),
                "slow_pipeline": ("2x4", "generic", ("latency",), 14)}
    for bug, (what, patch) in sparse_max_pool.BUGS.items():
        geometry, target, parts, depth = shown_by[bug]
        checks.append(Check(
            f"sparse_max_pool.bug.{bug}", proof(geometry, target=target, parts=parts,
                                                lemmas=False, patch=patch),
            "bmc", depth, **common, expect="FAIL", quick=bug == "eof_early",
            what=f"bounded, depth {depth}: {what}"))
    return checks


#: Early evaluation: (geometry, depth, quick).
POOL_EARLY = [("6x2", "generic", 26, True), ("6x2_groups2", "generic", 26, False),
              ("6x4", "generic", 24, False), ("6x2_pool1", "generic", 40, False),
              ("6x2", "ecp5", 28, False), ("6x2_pool1", "ecp5", 42, False)]


def _pool_early_checks():
    proof = pool_early.EarlyPoolProof
    common = dict(options=("--nopresat",), script=("memory_map",))
    def name(geometry, target):
        return geometry + ("_ecp5" if target == "ecp5" else "")

    checks = [Check(f"pool_early.{name(geometry, target)}", proof(geometry, target=target),
                    "bmc", depth, **common, quick=quick,
                    what=f"bounded, depth {depth}, row slack 1: no window read before a "
                         "later touch in its frame; by done its windows x groups read")
              for geometry, target, depth, quick in POOL_EARLY]
    checks += [Check(f"pool_early.cover.{name(geometry, target)}",
                     proof(geometry, target=target), "cover", depth, script=("memory_map",),
                     what="a window read while its frame still runs")
               for geometry, target, depth, _ in POOL_EARLY]
    for bug, (what, patch) in pool_early.BUGS.items():
        checks.append(Check(f"pool_early.bug.{bug}", proof("6x2", patch=patch), "bmc", 26,
                            **common, expect="FAIL", quick=True,
                            what=f"bounded, depth 26: {what}"))
    return checks


#: Bounded depths of the engine's checks (steps 0 to depth - 1). One layer, 2 x 2: the clears
#: take 20 cycles, the priming frame's end of frame leaves at step 46 at the earliest, a first
#: pixel is taken at step 47 and a frame's last beat at step 50; that frame's end of frame is
#: out at step 73 (no events) or 82 (an event; the cover check's steps), and the drain bound
#: (33 cycles of ready from step 51) falls at step 84: 85 reaches past both. Two layers: the
#: priming frame leaves at step 76, the first frame's end of frame (no events) is out at step
#: 120 at the earliest, so 122 reaches past it (with events, past step 140: some twice the
#: solver time, as each step costs more the deeper it is).
ENGINE_DEPTH = 85
ENGINE_LAYERS2_DEPTH = 122


def _engine_checks():
    # The stream rule on events closes by induction alone (the output register holds a beat
    # not taken; priming only falls). The ends of frame and the events' causes are bounded:
    # an induction would need invariants over every block of the chain, ends of frame inside
    # the layers' 64-entry event queues among them. ``memory_map``: the small memories as
    # flip-flops (about 2.5 times faster at depth 86 than smtbmc's arrays).
    proof = engine.EngineProof
    common = dict(options=("--nopresat",), script=("memory_map",))
    depth, depth2 = ENGINE_DEPTH, ENGINE_LAYERS2_DEPTH
    checks = [
        Check("engine.protocol", proof("2x2", parts=()), "prove", 1, quick=True,
              script=("memory_map",),
              what="induction, depth 1: protocol on events (valid and payload held until "
                   "taken), any ready pattern"),
        Check("engine.protocol_layers2", proof("2x2_layers2", parts=()), "prove", 1,
              script=("memory_map",), what="the same, two layers"),
        Check("engine.frames", proof("2x2"), "bmc", depth, **common,
              what=f"bounded, depth {depth}, 2 x 2, one layer: protocol on events; no end of "
                   "frame out without an input frame's last beat, one frame in flight at "
                   f"most, its end of frame out within {engine.DRAIN['2x2']} cycles of ready "
                   "(so one out per frame); an event only in a frame a sample of which fired "
                   "(SPEC step 1), inside the output map, each (channel, y, x) once a frame"),
        Check("engine.layers2", proof("2x2_layers2"), "bmc", depth2, **common,
              what=f"bounded, depth {depth2}, two layers (the link between them): the same "
                   "but the drain bound, through the priming frame (its reset map over the "
                   "link) and a first frame without events"),
        Check("engine.cover", proof("2x2"), "cover", depth, script=("memory_map",),
              what="an event out, and a frame's end of frame after its events"),
    ]
    # (network, depth) that shows each bug, past the step where it fails: the priming frame's
    # doubled end of frame out, step 47 (two layers, 78); a first frame's beat not taken, 74;
    # the drain bound broken, 84; the priming frame's event shown, 46; an event out of a frame
    # whose samples did not fire, 82.
    shown_by = {"valid_drops": ("2x2", 76), "eof_twice": ("2x2", 50),
                "eof_dropped": ("2x2", depth), "priming_shown": ("2x2", 50),
                "detector_dense": ("2x2", 84), "link_eof_twice": ("2x2_layers2", 80)}
    for bug, (what, patch) in engine.BUGS.items():
        network, bug_depth = shown_by[bug]
        checks.append(Check(
            f"engine.bug.{bug}", proof(network, patch=patch), "bmc", bug_depth, **common,
            expect="FAIL", quick=bug == "eof_twice", what=f"bounded, depth {bug_depth}: {what}"))
    return checks


CHECKS = [*_stream_register_checks(), *_fanout_checks(), *_delta_detector_checks(),
          *_accumulator_checks(), *_sparse_max_pool_checks(), *_pool_early_checks(),
          *_engine_checks()]


def by_name(name):
    for check in CHECKS:
        if check.name == name:
            return check
    raise KeyError(name)
