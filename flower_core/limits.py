"""How much one action may queue: the study's seeds and a sweep's runs.

Kept apart from `study` and `sweep` (which import TensorFlow through the config) so that the
command line can quote them in its help before TensorFlow is imported, quietly.
"""

MAX_SEEDS = 10
DEFAULT_MAX_RUNS = 64
