"""Defaults the command line shows; a module of its own so `reiddata stats` and `verify`
start without importing the converter (scipy) or the synthetic world (Pillow)."""

DEFAULT_SHARD_SIZE = 5000  # samples per shard: ~25-100 MB of person crops
DEFAULT_IDENTITIES = 48  # people in a synthetic dataset, half of them train
