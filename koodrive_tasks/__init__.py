"""Drive KooDrive's asynchronous share tasks and batch jobs from asyncio.

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
from ._job_specs import (
    CopyJob,
    DecompressJob,
    DeleteJob,
    EmptyRecycleBinJob,
    JobSpec,
    MoveJob,
    PackageJob,
    RestoreJob,
)
from ._learning import DurationModel, ExpectedDuration, TaskKind
from ._limits import Limits
from ._models import (
    ActionType,
    FileResult,
    FileStatus,
    JobInfo,
    JobRef,
    JobType,
    ProgressUpdate,
    TargetFolder,
    TaskInfo,
    TaskRef,
    TaskResultCode,
    TaskStatus,
    TaskType,
    UncompressedFile,
)
from ._outcome import TaskOutcome
from ._policy import PollPlan, PollPolicy
from ._progress import ProgressSample
from ._stats import ClientStats, RequestEvent, RetryEvent
from ._waiter import JobWaiter, TaskWaiter
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
    "ActionType",
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
    "CopyJob",
    "CredentialProviderError",
    "DecompressJob",
    "DeleteJob",
    "DurationModel",
    "EmptyRecycleBinJob",
    "EventLoopMismatchError",
    "ExpectedDuration",
    "FileResult",
    "FileStatus",
    "InsecureURLError",
    "InvalidArgumentError",
    "InvalidParameterError",
    "JobInfo",
    "JobRef",
    "JobSpec",
    "JobType",
    "JobWaiter",
    "KooDriveClient",
    "KooDriveError",
    "Limits",
    "MalformedResponseError",
    "MoveJob",
    "NotFoundError",
    "PackageJob",
    "PermissionDeniedError",
    "PollPlan",
    "PollPolicy",
    "ProgressSample",
    "ProgressUpdate",
    "ProtocolError",
    "RateLimitedError",
    "RequestEvent",
    "RequestTimeoutError",
    "RestoreJob",
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
    "UncompressedFile",
    "UpdateStream",
    "UseClientDefault",
    "WaitTimeoutError",
    "WorkPool",
]
