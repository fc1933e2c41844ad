"""Family integration hub: agency events in, consent-gated family timelines out."""

from importlib import metadata

try:
    #: the installed distribution's version: pyproject.toml is its one source
    VERSION = metadata.version("family-hub")
except metadata.PackageNotFoundError:  # pragma: no cover - a bare source tree that was never installed
    VERSION = "0+unknown"
__version__ = VERSION
