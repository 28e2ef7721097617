"""Fleet mode: processes and hosts share one rate limit, one 429 pause and one poller per task.

The coordinator keeps them in Redis (or Valkey).

Install the ``redis`` extra (``pip install 'koodrive-tasks[redis]'``) or pass a
valkey-py client. The core never imports this package; a client is given one::

    from koodrive_tasks.fleet import RedisCoordinator

    coordinator = RedisCoordinator("redis://redis.internal:6379/0", lease_ttl=5.0)
"""

from ._coordinator import MAX_PAYLOAD, RedisCoordinator
from ._models import Claim, FleetStats, FleetUpdate

__all__ = ["MAX_PAYLOAD", "Claim", "FleetStats", "FleetUpdate", "RedisCoordinator"]
