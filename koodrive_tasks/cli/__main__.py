"""``python -m koodrive_tasks.cli``: the same as the ``koodrive-tasks`` command."""

from . import console_main

console_main()
