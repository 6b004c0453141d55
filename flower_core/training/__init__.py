"""Training a queued run: the worker and its queue, the training itself, progress callbacks, why it
stopped, time estimates.
"""
