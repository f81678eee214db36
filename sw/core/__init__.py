"""The layer contract: configuration, range checks, the bit-exact golden model, real data.

Pure numpy: nothing here imports Amaranth or any other eventconv package. ``SPEC.md`` beside
this file is the behavioural contract every other package obeys.
"""
