"""How much one action may queue: the study's seeds and a sweep's runs.

Kept apart from `study` and `sweep` (which import TensorFlow through the config) so that the
command line can quote them in its help before TensorFlow is imported, quietly.
"""

from flower_core.errors import FlowerError

MAX_SEEDS = 10
DEFAULT_MAX_RUNS = 64


def check_seeds(seeds) -> int:
    """`seeds` if it is a whole number from 1 to `MAX_SEEDS`: the one check the study and sweeps
    share, so each refuses what its help says."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise FlowerError(f"seeds must be between 1 and {MAX_SEEDS}. Received: seeds={seeds!r}")
    return seeds
