"""Drive KooDrive's asynchronous share tasks from asyncio.

Create a task, wait for it with exponential backoff, stream its progress, and get
the download URL of the finished package::

    async with KooDriveClient(base_url, auth=BearerToken(token)) as kd:
        waiter = kd.wait_for_task(share_id, task_id)
        async for update in waiter:
            print(update.progress, update.status)
        url = await waiter
"""

from ._auth import AppSignature, BearerToken
from ._batches import CompletionStream, TaskBatch, UpdateStream, WorkPool
from ._client import USE_CLIENT_DEFAULT, KooDriveClient, UseClientDefault
from ._clock import AsyncioClock, Clock
from ._learning import DurationModel, ExpectedDuration, TaskKind
from ._limits import Limits
from ._models import (
    FileResult,
    FileStatus,
    ProgressUpdate,
    TargetFolder,
    TaskInfo,
    TaskRef,
    TaskResultCode,
    TaskStatus,
    TaskType,
)
from ._outcome import TaskOutcome
from ._policy import PollPlan, PollPolicy
from ._progress import ProgressSample
from ._stats import ClientStats, RequestEvent, RetryEvent
from ._waiter import TaskWaiter
from .exceptions import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    ClockSkewError,
    ConnectError,
    CredentialProviderError,
    EventLoopMismatchError,
    InsecureURLError,
    InvalidArgumentError,
    InvalidParameterError,
    KooDriveError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    TaskStalledError,
    TransportError,
    WaitTimeoutError,
)

__all__ = [  # noqa: RUF022 - plain sorted(), as test_public_api checks
    "APIError",
    "AppSignature",
    "AsyncioClock",
    "AuthenticationError",
    "BearerToken",
    "ClientClosedError",
    "ClientStats",
    "Clock",
    "ClockSkewError",
    "CompletionStream",
    "ConnectError",
    "CredentialProviderError",
    "DurationModel",
    "EventLoopMismatchError",
    "ExpectedDuration",
    "FileResult",
    "FileStatus",
    "InsecureURLError",
    "InvalidArgumentError",
    "InvalidParameterError",
    "KooDriveClient",
    "KooDriveError",
    "Limits",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPlan",
    "PollPolicy",
    "ProgressSample",
    "ProgressUpdate",
    "ProtocolError",
    "RateLimitedError",
    "RequestEvent",
    "RequestTimeoutError",
    "RetryEvent",
    "ServerError",
    "TargetFolder",
    "TaskBatch",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TaskInfo",
    "TaskKind",
    "TaskOutcome",
    "TaskRef",
    "TaskResultCode",
    "TaskStalledError",
    "TaskStatus",
    "TaskType",
    "TaskWaiter",
    "TransportError",
    "USE_CLIENT_DEFAULT",
    "UpdateStream",
    "UseClientDefault",
    "WaitTimeoutError",
    "WorkPool",
]
