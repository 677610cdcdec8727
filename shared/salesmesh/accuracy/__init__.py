"""Live accuracy: serving versions' forecasts scored against the sales that arrive after them
(:mod:`salesmesh.accuracy.live`)."""

from salesmesh.accuracy.live import Live, recorded, score, update

__all__ = ["Live", "recorded", "score", "update"]
