"""The garbage collector, kept off what was made while the service started.

What a service makes while it starts (its modules and their libraries, the settings, the
app, its pools and metrics) lives as long as the process, yet each of the collector's
full collections walks all of it again, under load as often as every few hundred
requests: on uvicorn that was about a tenth of the chassis' throughput
(``bench/compare.py``).  Once the service is ready, ``gc.freeze`` moves what exists into
a generation the collector leaves alone; what requests make is collected as before.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> None:
    """Freeze what exists now; once per process (tests start many apps in one)."""
    global _frozen  # once per process, like the heap it concerns
    if not _frozen:
        _frozen = True
        gc.freeze()
