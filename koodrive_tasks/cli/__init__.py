"""``koodrive-tasks``: wait for, watch and create KooDrive share tasks and batch jobs; run the emulator.

Exit codes (``wait``, ``watch``, ``create --wait``, ``jobs wait``, ``jobs create --wait``,
``jobs cancel``, ``demo``; the worst task or job decides):

===  ==================================================================
0    completed, every file succeeded
1    any other error (network, protocol, server, invalid arguments)
2    bad command line
3    completed, some files failed (the URL is still printed)
4    completed, every file failed
5    canceled
6    timed out
7    authentication failed (token, app signature, clock skew)
130  interrupted
===  ==================================================================
"""

from ._main import console_main, main

__all__ = ["console_main", "main"]
