"""``eventconv demo``: the model on the bundled real clip, event mode against dense mode."""

from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model


def demo(clip="vtest_64x48", threshold=8):
    frames = load_clip(clip)
    _, height, width = frames.shape
    event = filter_bank_config(height, width, threshold=threshold)
    dense = event.replace(mode="dense")
    ev, de = run_model(event, frames), run_model(dense, frames)
    print(f"clip {clip}: {len(frames)} frames of {width}x{height}, K=3, Cout=8 "
          f"(filter bank), threshold {threshold}")
    print(f"{'frame':>5} {'events_in':>9} {'macs event':>11} {'macs dense':>11} "
          f"{'saving':>7} {'events_out':>10}")
    for t in range(len(frames)):
        saving = 1 - ev["macs"][t] / de["macs"][t]
        print(f"{t:>5} {ev['events_in'][t]:>9} {ev['macs'][t]:>11} {de['macs'][t]:>11} "
              f"{saving:>7.1%} {ev['events_out'][t]:>10}")
    # Frame 0 starts from an all-zero reference, so every pixel is an event: leave it out.
    steady = slice(1, None)
    total_ev, total_de = ev["macs"][steady].sum(), de["macs"][steady].sum()
    print(f"frames 1..{len(frames) - 1}: accumulate ops {total_ev} event vs {total_de} dense, "
          f"saving {1 - total_ev / total_de:.1%}; "
          f"output events {ev['events_out'][steady].sum()} "
          f"of {de['pooled'][0].size * (len(frames) - 1)} pooled values")
