"""Every error koodrive_tasks raises, in one tree.

::

    KooDriveError
    ├── InvalidArgumentError (ValueError)      bad input, caught before any request
    ├── ClientClosedError                      the client was closed under a wait or call
    ├── EventLoopMismatchError (RuntimeError)  a client used from a second event loop
    ├── TransportError                         no usable HTTP answer          [retryable]
    │   ├── ConnectError                       no connection was made         [retryable]
    │   └── RequestTimeoutError (TimeoutError) one request took too long      [retryable]
    ├── ProtocolError                          an answer we cannot trust
    │   ├── MalformedResponseError             not JSON, truncated, too large [retryable]
    │   └── InsecureURLError                   a download URL that is not https
    ├── APIError                               the service said no: status, code, trace id
    │   ├── AuthenticationError                401, API-gateway auth codes
    │   │   ├── ClockSkewError                 X-Date rejected: fix the clock
    │   │   └── CredentialProviderError        a token provider failed       [retryable]
    │   ├── PermissionDeniedError              403, 13000410
    │   ├── NotFoundError                      404, 13000301, 13000309
    │   ├── InvalidParameterError              13000102
    │   ├── RateLimitedError                   429, with ``retry_after``      [retryable]
    │   └── ServerError                        5xx                            [retryable]
    ├── TaskError                              the task ended, but not well
    │   ├── TaskFailedError                    completed, every file failed
    │   └── TaskCanceledError                  canceled
    └── WaitTimeoutError (TimeoutError)        the wait's deadline passed
        └── TaskStalledError                   no change for ``stall_timeout``

``retryable`` errors are retried inside a wait for as long as its deadline allows.
No message, attribute or repr here ever holds a credential, a ``kdstoken`` or the
query string of a download URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ._models import TaskInfo, TaskStatus


class KooDriveError(Exception):
    """Raised when anything in koodrive_tasks fails; the base class of every error here.

    Raised directly only for misuse, such as a call on a closed client.

    Attributes:
        retryable: Whether repeating the same request may succeed.
    """

    retryable: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON-ready data: ``type``, ``message``, ``trace_id``, ``code``.

        The one form every JSON output of this library uses (the CLI's JSON lines,
        server-sent events). It holds no secret: messages never quote one.
        """
        return {
            "type": type(self).__name__,
            "message": str(self),
            "trace_id": getattr(self, "trace_id", None),
            "code": getattr(self, "code", None),
        }


class ClientClosedError(KooDriveError):
    """Raised when the client was closed while a wait, a batch or a call was running.

    Also raised by any call on a client after :meth:`KooDriveClient.close`.
    """


class EventLoopMismatchError(KooDriveError, RuntimeError):
    """Raised when a client bound to one event loop is used from another.

    A client (its session, timers and waits) belongs to the loop it was first used
    in; create it inside the loop that uses it (one per ``asyncio.run``, per test).
    """


class InvalidArgumentError(KooDriveError, ValueError):
    """Raised when an argument is invalid, before any request is sent."""


class TransportError(KooDriveError):
    """Raised when no HTTP answer could be obtained (connection refused, reset, DNS).

    Attributes:
        trace_id: The ``X-Traceid`` sent with the request.
    """

    retryable = True

    def __init__(self, message: str, *, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.trace_id = trace_id


class ConnectError(TransportError):
    """Raised when no connection could be established (refused, DNS, TLS handshake).

    The server surely did nothing, so even a create request may be repeated.
    """


class RequestTimeoutError(TransportError, TimeoutError):
    """Raised when a single request did not complete within ``request_timeout``."""


class ProtocolError(KooDriveError):
    """Raised when an answer does not follow the KooDrive API (wrong shape or values).

    Attributes:
        trace_id: The ``X-Traceid`` of the request, if any.
        http_status: The HTTP status of the answer, if any.
    """

    def __init__(
        self, message: str, *, trace_id: str | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.trace_id = trace_id
        self.http_status = http_status


class MalformedResponseError(ProtocolError):
    """Raised when a body is not JSON, is truncated, or exceeds the size cap.

    Such damage is usually transient (a proxy, a dropped connection), so polls retry it.
    """

    retryable = True


class InsecureURLError(ProtocolError):
    """Raised when a ``downloadUrl`` is not ``https`` and plain HTTP was not allowed."""


class APIError(KooDriveError):
    """Raised when KooDrive or its API gateway answers with an error.

    Attributes:
        http_status: The HTTP status code (``None`` when no answer is involved).
        code: The service code (``"13000102"``) or gateway code (``"APIGW.0303"``), if any.
        message: The server's message, if any.
        trace_id: The ``X-Traceid`` sent with the request; quote it to support.
        request_id: The gateway's ``request_id``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None,
        code: str | None = None,
        server_message: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = server_message
        self.trace_id = trace_id
        self.request_id = request_id


class AuthenticationError(APIError):
    """Raised when credentials are missing, expired or wrong (HTTP 401, gateway auth codes)."""


class ClockSkewError(AuthenticationError):
    """Raised when an app signature is rejected because ``X-Date`` is out of the window."""


class CredentialProviderError(AuthenticationError):
    """Raised when a ``BearerToken`` provider failed instead of returning a token.

    It names the provider and the kind of failure, never the provider's message (it
    may hold a secret). Retried inside a wait, with backoff, as the provider is
    usually a token endpoint that may recover.

    Attributes:
        provider: The provider's name.
    """

    retryable = True

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message, http_status=None)
        self.provider = provider


class PermissionDeniedError(APIError):
    """Raised when the credentials lack permission on the space or share (403, 13000410)."""


class NotFoundError(APIError):
    """Raised when the share, task or space does not exist (404, 13000301, 13000309)."""


class InvalidParameterError(APIError):
    """Raised when the service rejects a parameter (13000102)."""


class RateLimitedError(APIError):
    """Raised when the server throttles the client (HTTP 429).

    Attributes:
        retry_after: Seconds the server asked us to wait, if it said.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        http_status: int = 429,
        code: str | None = None,
        server_message: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            http_status=http_status,
            code=code,
            server_message=server_message,
            trace_id=trace_id,
            request_id=request_id,
        )
        self.retry_after = retry_after


class ServerError(APIError):
    """Raised when the server or gateway fails (HTTP 5xx)."""

    retryable = True


class TaskError(KooDriveError):
    """Raised when a task ended without a usable result.

    Attributes:
        task_id: The task's id.
        info: The task's final state.
    """

    def __init__(self, message: str, *, info: TaskInfo) -> None:
        super().__init__(message)
        self.task_id = info.task_id
        self.info = info


class TaskFailedError(TaskError):
    """Raised when a task completed but every file failed (``taskResultCode`` 3)."""


class TaskCanceledError(TaskError):
    """Raised when a task was canceled (``taskStatus`` 3)."""


class WaitTimeoutError(KooDriveError, TimeoutError):
    """Raised when a wait's deadline passed before the task ended.

    Attributes:
        task_id: The task's id.
        timeout: The deadline in seconds.
        last_info: The last state seen, or ``None`` if no poll succeeded.
        last_error: The last error met while polling, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        timeout: float,
        last_info: TaskInfo | None,
        last_error: KooDriveError | None,
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.timeout = timeout
        self.last_info = last_info
        self.last_error = last_error

    @property
    def last_status(self) -> TaskStatus | None:
        """The last status seen, or ``None``."""
        return None if self.last_info is None else self.last_info.status


class TaskStalledError(WaitTimeoutError):
    """Raised when a task's status and progress did not change for ``stall_timeout``.

    The task may still be running: KooDrive was reachable but reported no change.

    Attributes:
        stalled_for: Seconds without a change.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        timeout: float,
        last_info: TaskInfo | None,
        last_error: KooDriveError | None,
        stalled_for: float,
    ) -> None:
        super().__init__(
            message, task_id=task_id, timeout=timeout, last_info=last_info, last_error=last_error
        )
        self.stalled_for = stalled_for
