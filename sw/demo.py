"""``eventconv demo``: the model on the bundled real clip, event mode against dense mode: one
layer (a filter bank), then a real trained network (PNet's first four layers)."""

from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model
from eventconv.core.nets import load_net
from eventconv.core.network import Network

# Frame 0 starts from an all-zero reference, so every pixel is an event: left out of totals.
STEADY = slice(1, None)


def demo(clip="vtest_64x48", threshold=8):
    frames = load_clip(clip)
    _, height, width = frames.shape
    event = filter_bank_config(height, width, threshold=threshold)
    ev, de = run_model(event, frames), run_model(event.replace(mode="dense"), frames)
    print(f"clip {clip}: {len(frames)} frames of {width}x{height}, K=3, Cout=8 "
          f"(filter bank), threshold {threshold}")
    print(f"{'frame':>5} {'events_in':>9} {'macs event':>11} {'macs dense':>11} "
          f"{'saving':>7} {'events_out':>10}")
    for t in range(len(frames)):
        saving = 1 - ev["macs"][t] / de["macs"][t]
        print(f"{t:>5} {ev['events_in'][t]:>9} {ev['macs'][t]:>11} {de['macs'][t]:>11} "
              f"{saving:>7.1%} {ev['events_out'][t]:>10}")
    total_ev, total_de = ev["macs"][STEADY].sum(), de["macs"][STEADY].sum()
    print(f"frames 1..{len(frames) - 1}: accumulate ops {total_ev} event vs {total_de} dense, "
          f"saving {1 - total_ev / total_de:.1%}; "
          f"output events {ev['events_out'][STEADY].sum()} "
          f"of {de['pooled'][0].size * (len(frames) - 1)} pooled values")
    if clip == "vtest_64x48":
        network_demo(frames, threshold)


def network_demo(frames, threshold):
    """PNet's first four layers (real trained weights) on the same frames, layer by layer."""
    net = load_net("pnet_64x48")
    obj = {**net.to_dict(), "threshold": threshold}
    ev = run_model(Network.from_dict(obj), frames)
    de = run_model(Network.from_dict({**obj, "mode": "dense"}), frames)
    print(f"\nnetwork pnet_64x48 (PNet conv1..conv4_1, real trained weights), frames 1.."
          f"{len(frames) - 1}:")
    print(f"{'layer':>5} {'map':>10} {'events_in':>10} {'macs event':>11} {'macs dense':>11} "
          f"{'event/dense':>11}")
    for i, layer in enumerate(net.layers):
        c, h, w = layer.output_shape
        macs_ev, macs_de = ev["macs"][STEADY, i].sum(), de["macs"][STEADY, i].sum()
        print(f"{i:>5} {f'{c}x{h}x{w}':>10} {ev['events_in'][STEADY, i].sum():>10} "
              f"{macs_ev:>11} {macs_de:>11} {macs_ev / macs_de:>11.1%}")
    total_ev, total_de = ev["macs"][STEADY].sum(), de["macs"][STEADY].sum()
    error = abs(ev["output"][STEADY].astype(int) - de["output"][STEADY]).mean()
    print(f"whole network: accumulate ops {total_ev} event vs {total_de} dense "
          f"({total_ev / total_de:.1%}); mean output error against dense {error:.2f} grey levels")
