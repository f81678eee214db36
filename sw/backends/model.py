"""``eventconv run --backend model``: the golden model."""

from eventconv.core.model import run_model

__all__ = ["run"]


def run(config, frames):
    """OUT.npz's arrays of ``frames`` through a fresh model
    (:func:`~eventconv.core.model.run_model`)."""
    return run_model(config, frames)
