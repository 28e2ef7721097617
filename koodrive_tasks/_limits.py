"""``Limits``: how hard one client (or, with a coordinator, a whole fleet) may press on the server."""

from __future__ import annotations

import attrs

from ._validate import at_least_one, fraction, positive, positive_or_none


@attrs.frozen
class Limits:
    """How hard one client may press on the server.

    Attributes:
        max_in_flight: Requests in flight at once (per process, always).
        rate: Sustained requests per second (``None``: unlimited). With a fleet
            coordinator, the rate of the whole fleet.
        burst: Requests that may go at once after a quiet spell.
        pause_spread: After a throttling pause, the requests that queued during it
            resume spread evenly over this fraction of the pause (at least one
            second) instead of all at the same instant; with a ``rate``, never
            faster than it.
        default_pause: Seconds to pause after a 429 that carries no ``Retry-After``.
    """

    max_in_flight: int = attrs.field(default=64, validator=at_least_one)
    rate: float | None = attrs.field(default=50.0, validator=positive_or_none)
    burst: int = attrs.field(default=50, validator=at_least_one)
    pause_spread: float = attrs.field(default=0.25, validator=fraction)
    # Not None: a 429 without Retry-After pauses for this long (None failed at the first 429).
    default_pause: float = attrs.field(default=1.0, validator=positive)
