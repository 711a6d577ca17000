"""Pure CTI library: indicators (refang, classify, normalise) and feed readers.

Nothing here imports another ``phantom_spire`` package, so the library can be used on its own::

    from phantom_spire.cti import indicators, feeds
"""

from __future__ import annotations

__all__ = ["errors", "feeds", "indicators"]
