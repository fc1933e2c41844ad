"""Family integration hub: agency events in, consent-gated family timelines out."""

__version__ = "0.1.0"
