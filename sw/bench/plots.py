"""The benchmark's plots (PNG, matplotlib)."""


import numpy as np

from eventconv.bench.energy import CATEGORIES
from eventconv.bench.measure import (
    STEADY_FROM,
    THRESHOLD,
    steady,
    utilisation_bound,
    utilisation_rows,
)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_per_frame(results, path):
    plt = _pyplot()
    modes = results["modes"][results["settings"].knobs]
    event, dense = modes["event"], modes["dense"]
    t = np.arange(len(event["macs"]))
    rows = [("events_in", "input events"), ("macs", "accumulate ops")]
    if "cycles" in event:
        rows.append(("cycles", "clock cycles"))
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.6 * len(rows) + 0.6), sharex=True)
    for ax, (key, label) in zip(axes, rows, strict=True):
        ax.semilogy(t, dense[key], "s-", color="tab:red", ms=3, label="dense mode")
        ax.semilogy(t, event[key], "o-", color="tab:blue", ms=3, label="event mode")
        ax.set_ylabel(f"{label}\nper frame")
        ax.grid(True, which="both", alpha=0.3)
        share = steady(event[key]).sum() / steady(dense[key]).sum()
        ax.set_title(f"{label}: event mode = {share:.1%} of dense "
                     f"(frames {STEADY_FROM}..{len(t) - 1})", fontsize=10)
    axes[0].legend(loc="center right")
    axes[-1].set_xlabel("frame")
    lanes, ppc = results["settings"].knobs
    fig.suptitle(f"{results['settings'].clip}, K=3, Cout=8, threshold {THRESHOLD}, "
                 f"lanes={lanes}, pixels/clock={ppc}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_thresholds(results, path):
    plt = _pyplot()
    rows = results["thresholds"]
    thresholds = [r["threshold"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 5.2))
    work = [100 * r["macs_fraction"] for r in rows]
    ax.plot(x, work, "o-", color="tab:blue", label="accumulate ops, % of dense")
    modes = results["modes"][results["settings"].knobs]
    if rows[0]["cycles"] is not None and "cycles" in modes["dense"]:
        dense_cycles = steady(modes["dense"]["cycles"]).mean()
        cycles = [100 * r["cycles"] / dense_cycles for r in rows]
        ax.plot(x, cycles, "s--", color="tab:green", label="RTL cycles, % of dense")
        work = work + cycles
    ax.set_xticks(x, [str(t) for t in thresholds])
    ax.set_xlabel("delta detector threshold T")
    ax.set_ylabel("work per frame, % of dense mode", color="tab:blue")
    ax.set_ylim(0, max(work + [10]) * 1.15)
    ax.grid(True, alpha=0.3)
    err = ax.twinx()
    err.plot(x, [r["mean_abs_error"] for r in rows], "^-", color="tab:red",
             label="pooled output: mean |error|")
    err.plot(x, [r["max_abs_error"] for r in rows], "v:", color="tab:purple",
             label="pooled output: max |error|")
    err.set_ylabel("pooled-output error vs dense layer (uint8 levels)", color="tab:red")
    err.set_yscale("symlog", linthresh=1)
    err.set_ylim(0, 300)
    lines = ax.get_legend_handles_labels()
    lines2 = err.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", fontsize=9,
              bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.set_title(f"Threshold trades accuracy for work (frames {STEADY_FROM}.. for work, all "
                 "frames for error)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_output_thresholds(results, path):
    plt = _pyplot()
    rows = results["network"]["output_thresholds"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    work = [100 * r["macs_fraction"] for r in rows]
    ax.plot(x, work, "o-", color="tab:blue", label="accumulate ops, % of dense")
    ax.set_xticks(x, [str(r["output_threshold"]) for r in rows])
    ax.set_xlabel("output threshold U (every layer but the last)")
    ax.set_ylabel("work per frame, % of dense network", color="tab:blue")
    ax.set_ylim(0, max(work) * 1.2)
    ax.grid(True, alpha=0.3)
    err = ax.twinx()
    err.plot(x, [r["mean_abs_error"] for r in rows], "^-", color="tab:red",
             label="output: mean |error|")
    err.set_ylabel("output error vs dense network (uint8 levels)", color="tab:red")
    lines, lines2 = ax.get_legend_handles_labels(), err.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=9)
    ax.set_title(f"{results['network']['net']}: output threshold trades accuracy for work",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_network_layers(results, path):
    """One panel per layer of the bench's network: accumulate ops per frame, event mode
    against dense mode, over the clip."""
    plt = _pyplot()
    n = results["network"]
    event, dense = n["per_frame"]["macs_event"], n["per_frame"]["macs_dense"]
    layers = event.shape[1]
    fig, axes = plt.subplots(1, layers, figsize=(3.4 * layers, 3.6), squeeze=False)
    frames = np.arange(len(event))
    for i, ax in enumerate(axes[0]):
        ax.semilogy(frames, np.maximum(event[:, i], 1), "o-", ms=3, label="event")
        ax.semilogy(frames, dense[:, i], "s--", ms=3, mfc="none", label="dense")
        share = event[STEADY_FROM:, i].sum() / dense[STEADY_FROM:, i].sum()
        ax.set_title(f"layer {i}: {100 * share:.1f} % of dense", fontsize=10)
        ax.set_xlabel("frame")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("accumulate ops per frame")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{n['net']} layer by layer, input threshold {n['threshold']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_utilisation(results, path):
    plt = _pyplot()
    settings = results["settings"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2),
                                      gridspec_kw={"width_ratios": [1, 1.1]})
    top = 1
    for index, (knobs, modes) in enumerate(results["modes"].items()):
        config = modes["config"]
        for mode, fill in (("event", True), ("dense", False)):
            out = modes[mode]
            cycles, bound = steady(out["cycles"]), utilisation_bound(config, steady(out["macs"]))
            top = max(top, bound.max(), cycles.max())
            label = f"lanes={knobs[0]}, pixels/clock={knobs[1]}" if mode == "event" else None
            left.loglog(bound, cycles, "o" if fill else "s", ms=5, alpha=0.8, label=label,
                        color=f"C{index}", mfc=None if fill else "none")
    line = np.array([300, top * 1.3])
    left.loglog(line, line, "k-", lw=1, label="cycles = bound")
    left.loglog(line, 1.1 * line, "k--", lw=1, label="cycles = 1.1 x bound")
    left.set_xlabel("bound max(pixels / pixels-per-clock, macs / lanes)")
    left.set_ylabel("RTL cycles per frame")
    left.set_title(f"Cycles vs bound, frames {STEADY_FROM}..: filled = event, hollow = dense",
                   fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    rows = utilisation_rows(results)
    names = [f"{r['knobs'][0]} x {r['knobs'][1]}" for r in rows]
    x = np.arange(len(rows))
    bound = np.array([r["event"]["bound"] for r in rows])
    bottom = np.zeros(len(rows))
    for color, part in zip(("C0", "C1", "C2", "C3"), ("scan", "fan-out", "pool reads",
                                                     "output events"), strict=True):
        values = np.array([r["parts"][part] for r in rows]) / bound
        right.bar(x - 0.2, values, 0.38, bottom=bottom, color=color, alpha=0.75, label=part)
        bottom += values
    measured = np.array([r["event"]["cycles"] for r in rows]) / bound
    right.bar(x + 0.2, measured, 0.38, color="0.25", label="measured")
    for xi, value in zip(x, measured, strict=True):
        right.text(xi + 0.2, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    right.axhline(1.0, color="k", lw=1, label="bound")
    right.axhline(1.1, color="k", lw=1, ls="--", label="1.1 x bound")
    right.set_xticks(x, names)
    right.set_xlabel("lanes x pixels per clock")
    right.set_ylabel(f"event-mode cycles / bound (means of frames {STEADY_FROM}..)")
    right.set_title("Event mode: stage needs (stacked: no overlap) vs measured", fontsize=10)
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize=8, ncol=2, loc="upper right")
    right.set_ylim(0, max(bottom.max(), measured.max()) * 1.35)
    default = f"default {settings.knobs[0]} x {settings.knobs[1]}"
    fig.suptitle(f"Lane utilisation ({default})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_energy(results, path):
    plt = _pyplot()
    energy = results["energy"]
    means = {mode: [steady(energy[mode]["energy"][k]).mean() / 1000 for k in CATEGORIES]
             for mode in ("event", "dense")}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    y = np.arange(len(CATEGORIES))
    ax.barh(y + 0.2, means["dense"], 0.4, color="tab:red", label="dense mode")
    ax.barh(y - 0.2, means["event"], 0.4, color="tab:blue", label="event mode")
    ax.set_yticks(y, CATEGORIES)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per frame, nJ (log scale; mean of frames {STEADY_FROM}..)")
    total = {m: steady(energy[m]["energy"]["total"]).mean() / 1000 for m in means}
    ax.set_title(f"Energy estimate (Horowitz ISSCC 2014, 45 nm): event {total['event']:.1f} nJ"
                 f" vs dense {total['dense']:.1f} nJ per frame", fontsize=10)
    ax.grid(True, which="both", axis="x", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Report


def plot_pareto(rows, front, path):
    """A sweep's points (:mod:`eventconv.bench.sweep`): output error against cycles per frame,
    the marker's size the logic estimate, the Pareto points (cycles, error, logic) ringed and
    the error-cycles front drawn as a staircase."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    cycles = np.array([row["cycles"] for row in rows], dtype=np.float64)
    error = np.array([row["error"] for row in rows], dtype=np.float64)
    logic = np.array([row["logic"] for row in rows], dtype=np.float64)
    size = 20 + 180 * logic / logic.max()
    best = np.array(front, dtype=bool)
    scatter = ax.scatter(cycles, error, s=size, c=[row["work_pct"] for row in rows],
                         cmap="viridis", alpha=0.8)
    ax.scatter(cycles[best], error[best], s=size[best] + 60, facecolors="none",
               edgecolors="tab:red", linewidths=1.5, label="Pareto (cycles, error, logic)")
    # The error-cycles front alone: each point with less error than every faster one.
    order = np.lexsort((error, cycles))
    steps = [i for k, i in enumerate(order) if error[i] < error[order[:k]].min(initial=np.inf)]
    ax.step(cycles[steps], error[steps], where="post", color="tab:red", lw=0.8, alpha=0.6)
    fig.colorbar(scatter, label="accumulate ops, % of dense")
    ax.set_xscale("log")
    ax.set_xlabel("clock cycles per frame (estimate)")
    ax.set_ylabel("mean output error against dense (grey levels)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", title="marker size: logic estimate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
