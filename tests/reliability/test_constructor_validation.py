"""Every constructor argument is checked at construction, and refused with InvalidArgumentError.

For each argument of ``KooDriveClient``, ``BearerToken``, ``AppSignature``,
``PollPolicy``, ``Limits`` and ``TaskRef``, Hypothesis passes values of every kind
(wrong types, classes instead of instances, NaN, infinities, integers past any float,
blank text, control characters, lone surrogates) and checks the outcome against the
documented contract: a valid value constructs, any other raises ``InvalidArgumentError``
(never another exception, never later), and no message quotes a secret. Text that
reaches a header (``language``, ``agent_name``, tokens, app ids) and was accepted is
then sent to a loopback server, which must receive it unchanged. A continuation token,
user data read back from storage, resumes or is refused the same way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rel_support import SHARE, WebServer

from koodrive_tasks import (
    AppSignature,
    AsyncioClock,
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    KooDriveError,
    Limits,
    PollPolicy,
    TaskRef,
)
from koodrive_tasks.testing import VirtualClock

SECRET = "SeCrEt-4f1c9a2b7d"
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**308, max_value=10**400),
    st.floats(),
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Zs"]), max_size=4),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.text(max_size=3)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
    st.sampled_from(
        [BearerToken, AppSignature, AsyncioClock, VirtualClock, PollPolicy, Limits, int, str]
    ),
    st.builds(VirtualClock),
    st.builds(PollPolicy),
    st.builds(Limits),
    st.just(print),
    st.just(1 + 2j),
)


# --- the contract, argument by argument -----------------------------------------------------


def number(value: object) -> bool:
    """An int or float that a float can hold (not a bool)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def finite(value: object) -> bool:
    return number(value) and math.isfinite(value)  # type: ignore[arg-type]


def header_text(value: object) -> bool:
    """Text an HTTP header can carry: non-blank, no C0 control or DEL, no lone surrogate."""
    if not isinstance(value, str) or not value.strip():
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def encodable_text(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def integer_at_least(low: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def is_instance_of(*types: type) -> Callable[[object], bool]:
    return lambda v: isinstance(v, types)


def is_clock(value: object) -> bool:
    return not isinstance(value, type) and all(
        callable(getattr(value, name, None)) for name in ("monotonic", "now", "sleep")
    )


CLIENT: dict[str, Callable[[object], bool]] = {
    "auth": is_instance_of(BearerToken, AppSignature),
    "request_timeout": lambda v: finite(v) and v > 0,  # type: ignore[operator]
    "language": lambda v: v is None or header_text(v),
    "agent_name": lambda v: v is None or header_text(v),
    "policy": lambda v: v is None or isinstance(v, PollPolicy),
    "attempts": integer_at_least(1),
    "max_response_bytes": lambda v: integer_at_least(1024)(v) and v < sys.maxsize,  # type: ignore[operator]
    "allow_insecure_urls": is_instance_of(bool),
    "clock": lambda v: v is None or is_clock(v),
    "limits": lambda v: v is None or isinstance(v, Limits),
    "on_request": lambda v: v is None or callable(v),
    "on_retry": lambda v: v is None or callable(v),
    "session": lambda v: v is None,  # an open ClientSession is valid too; none is generated
}

POLICY_DEFAULTS = PollPolicy()


def policy_field(name: str, value: object) -> bool:
    d = POLICY_DEFAULTS
    if name == "progress_aware":
        return isinstance(value, bool)
    if name == "jitter":
        return number(value) and 0 <= value <= 1  # type: ignore[operator]
    if name in ("timeout", "stall_timeout"):
        return value is None or (finite(value) and value > 0)  # type: ignore[operator]
    if not (finite(value) and value >= 0):  # type: ignore[operator]
        return False
    v: float = value  # type: ignore[assignment]
    return {
        "factor": v >= 1,
        "initial_delay": v <= d.max_delay and v <= d.progress_max_delay,
        "max_delay": v >= d.initial_delay,
        "retry_initial_delay": v <= d.retry_max_delay,
        "retry_max_delay": v >= d.retry_initial_delay,
        "retry_after_min": v <= d.retry_after_max,
        "retry_after_max": v >= d.retry_after_min,
        "progress_max_delay": v >= d.initial_delay,
        "poll_cost": True,
    }[name]


POLICY_FIELDS = [
    "initial_delay",
    "factor",
    "max_delay",
    "jitter",
    "timeout",
    "retry_initial_delay",
    "retry_max_delay",
    "retry_after_min",
    "retry_after_max",
    "progress_aware",
    "progress_max_delay",
    "poll_cost",
    "stall_timeout",
]

LIMITS: dict[str, Callable[[object], bool]] = {
    "max_in_flight": integer_at_least(1),
    "burst": integer_at_least(1),
    "rate": lambda v: v is None or (finite(v) and v > 0),  # type: ignore[operator]
    "pause_spread": lambda v: number(v) and 0 <= v <= 1,  # type: ignore[operator]
    "default_pause": lambda v: finite(v) and v > 0,  # type: ignore[operator]
}


def outcome_of(build: Callable[[], object]) -> BaseException | None:
    try:
        build()
    except BaseException as error:  # anything at all: the assertions say what is allowed
        return error
    return None


def check(valid: bool, error: BaseException | None, *secrets: str) -> None:
    if valid:
        assert error is None, f"a valid value was refused: {error!r}"
        return
    assert isinstance(error, InvalidArgumentError), (
        f"not refused as InvalidArgumentError: {error!r}"
    )
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error)


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(name=st.sampled_from(sorted(CLIENT)), value=anything)
@example(name="auth", value=BearerToken)
@example(name="clock", value=AsyncioClock)
@example(name="clock", value=VirtualClock)
@example(name="max_response_bytes", value=2**70)
@example(name="request_timeout", value=10**400)
@example(name="language", value="en\r\nX-Injected: 1")
@example(name="language", value=5)
@example(name="agent_name", value="agent\udc80")
def test_every_client_argument_is_checked_at_construction(name: str, value: object) -> None:
    """KooDriveClient: each argument is valid per its contract, or InvalidArgumentError at once."""
    error = outcome_of(
        lambda: KooDriveClient(
            "https://kd.example.com",
            **{"auth": BearerToken(SECRET), name: value},  # type: ignore[arg-type]
        )
    )
    check(CLIENT[name](value), error, SECRET)


def test_an_auth_object_missing_part_of_the_scheme_is_refused_at_construction() -> None:
    """An auth look-alike without clock_sensitive (read at the first 401) is refused up front."""

    class AlmostAuth:
        async def headers(self, *args: object) -> dict[str, str]:
            return {"Authorization": f"Bearer {SECRET}"}

        async def refresh(self, rejected: dict[str, str]) -> bool:
            return False

        def secrets(self) -> tuple[str, ...]:
            return (SECRET,)

    error = outcome_of(lambda: KooDriveClient("https://kd.example.com", auth=AlmostAuth()))  # type: ignore[arg-type]
    check(False, error, SECRET)


async def test_a_closed_session_is_refused_at_construction() -> None:
    """A ClientSession already closed is an InvalidArgumentError, not a RuntimeError at the first request."""
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(InvalidArgumentError, match="session"):
        KooDriveClient("https://kd.example.com", auth=BearerToken(SECRET), session=session)


@SETTINGS
@given(
    url=st.one_of(st.text(max_size=40), st.builds("https://{}/".format, st.text(max_size=20))),
    password=st.text(max_size=5),
)
@example(url="https://kd.example.com:99999/", password="")
@example(url="https://[::1/", password="")
@example(url="https://kd.example.com/\r\n", password="")
@example(url="https://%\xb8", password="")
@example(url="https://", password="[]")  # yarl's parser raised IndexError
def test_any_base_url_constructs_or_is_refused_without_its_password(
    url: str, password: str
) -> None:
    """Any text as base_url (a password in it included) constructs or is an InvalidArgumentError."""
    with_secret = url.replace("https://", f"https://user:{SECRET}{password}@", 1)
    for candidate in (url, with_secret):
        error = outcome_of(lambda c=candidate: KooDriveClient(c, auth=BearerToken("t")))  # type: ignore[misc]
        assert error is None or isinstance(error, InvalidArgumentError), repr(error)
        if error is not None:
            assert SECRET not in str(error)
            assert error.__context__ is None or SECRET not in str(error.__context__)
        if SECRET in candidate:  # credentials in the base URL are refused, however it parses
            assert isinstance(error, InvalidArgumentError)


@SETTINGS
@given(value=anything, suffix=st.text(max_size=6))
@example(value=None, suffix="\n")
@example(value=None, suffix="\ud800")
def test_every_bearer_token_is_checked_at_construction(value: object, suffix: str) -> None:
    """BearerToken: a header-safe string or a callable; anything else refused, never quoted."""
    token = SECRET + suffix if value is None else value
    valid = callable(token) or header_text(token)
    check(valid, outcome_of(lambda: BearerToken(token)), SECRET)  # type: ignore[arg-type]


@SETTINGS
@given(
    field=st.sampled_from(["app_id", "app_secret", "user_id"]),
    value=anything,
    suffix=st.text(max_size=6),
)
@example(field="app_secret", value=None, suffix="\udc80")
@example(field="app_id", value=None, suffix="\r\n")
def test_every_app_signature_argument_is_checked_at_construction(
    field: str, value: object, suffix: str
) -> None:
    """AppSignature: ids header-safe, the secret valid text; refused without quoting the secret."""
    chosen = SECRET + suffix if value is None else value
    args = {"app_id": "app-1", "app_secret": SECRET, "user_id": "user-1", field: chosen}
    valid = (encodable_text if field == "app_secret" else header_text)(chosen)
    check(valid, outcome_of(lambda: AppSignature(**args)), SECRET)  # type: ignore[arg-type]


@SETTINGS
@given(field=st.sampled_from(POLICY_FIELDS), value=anything)
@example(field="initial_delay", value=10**400)
@example(field="timeout", value=float("inf"))
@example(field="jitter", value=float("nan"))
def test_every_poll_policy_field_is_checked_at_construction(field: str, value: object) -> None:
    """PollPolicy: each field valid per its contract (ranges and order), or InvalidArgumentError."""
    check(policy_field(field, value), outcome_of(lambda: PollPolicy(**{field: value})))  # type: ignore[arg-type]


@SETTINGS
@given(field=st.sampled_from(sorted(LIMITS)), value=anything)
@example(field="default_pause", value=None)
@example(field="rate", value=10**400)
def test_every_limits_field_is_checked_at_construction(field: str, value: object) -> None:
    """Limits: each field valid per its contract, or InvalidArgumentError (default_pause None included)."""
    check(LIMITS[field](value), outcome_of(lambda: Limits(**{field: value})))  # type: ignore[arg-type]


@SETTINGS
@given(
    field=st.sampled_from(["share_id", "task_id", "kdstoken"]),
    value=anything,
    suffix=st.text(max_size=4),
)
@example(field="kdstoken", value=None, suffix="\udc80")
@example(field="kdstoken", value=5, suffix="")
def test_every_task_ref_field_is_checked_at_construction(
    field: str, value: object, suffix: str
) -> None:
    """TaskRef: ids non-blank text, kdstoken text or None; refused without quoting the kdstoken."""
    chosen = SECRET + suffix if value is None else value
    args = {"share_id": "s", "task_id": "t", "kdstoken": None, field: chosen}
    if field == "kdstoken":
        valid = (
            chosen is None
            or chosen == ""
            or (isinstance(chosen, str) and encodable_text(chosen + "x"))
        )
    else:
        valid = encodable_text(chosen)
    check(valid, outcome_of(lambda: TaskRef(**args)), SECRET)  # type: ignore[arg-type]


# --- accepted header text reaches the server unchanged ---------------------------------------

header_strings = st.text(min_size=1, max_size=20).filter(header_text)


@SETTINGS
@given(language=header_strings, agent=header_strings, token=header_strings, user=header_strings)
@example(language=" en-US ", agent="\x85agent", token="t\u2028k", user="用户")
async def test_accepted_header_text_is_sent_unchanged(
    language: str, agent: str, token: str, user: str
) -> None:
    """language, agent_name, a token and an app's user id that were accepted go out as given."""
    received: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response({"code": "0", "taskInfo": {"taskId": "t1", "taskStatus": 1}})

    async with WebServer(record) as server:
        for auth in (BearerToken(token), AppSignature("app-1", "secret", user)):
            async with KooDriveClient(
                server.url,
                auth=auth,
                allow_insecure_urls=True,
                language=language,
                agent_name=agent,
                attempts=1,
            ) as kd:
                await kd.get_share_task(SHARE, "t1")
    ows = " \t"  # HTTP drops optional whitespace around a value, and only that
    bearer, app = received
    assert bearer["language"] == language.strip(ows)
    assert bearer["X-Hw-Agentname"] == agent.strip(ows)
    assert bearer["Authorization"] == f"Bearer {token}".strip(ows)
    assert app["X-User-Id"] == user.strip(ows)


@pytest.mark.parametrize(
    "build",
    [
        lambda: KooDriveClient("https://kd.example.com", auth=BearerToken("t")).wait_for_task(
            "s", "t", timeout=10**400
        ),
        lambda: KooDriveClient("https://kd.example.com", auth=BearerToken("t")).wait_for_task(
            "s",
            "t",
            timeout="5",  # type: ignore[arg-type]
        ),
        lambda: KooDriveClient("https://kd.example.com", auth=BearerToken("t")).wait_for_task(
            "s",
            "t",
            policy=PollPolicy,  # type: ignore[arg-type]
        ),
    ],
    ids=["huge-int-timeout", "string-timeout", "policy-class"],
)
def test_wait_arguments_are_checked_when_the_wait_is_made(build: Callable[[], Any]) -> None:
    """wait_for_task's timeout and policy: InvalidArgumentError when the waiter is made."""
    error = outcome_of(build)
    assert isinstance(error, InvalidArgumentError), repr(error)
    assert isinstance(error, KooDriveError)


# --- a continuation token is user data too ---------------------------------------------------


@SETTINGS
@given(data=st.data())
@example(data=None)
def test_any_continuation_token_resumes_or_is_refused(data: st.DataObject | None) -> None:
    """resume(): a checkpoint with any field replaced by any JSON value resumes or is refused typed."""
    kd = KooDriveClient("https://kd.example.com", auth=BearerToken(SECRET))
    document = json.loads(kd.checkpoint([kd.wait_for_task("s", "t", timeout=5)]))
    wait = document["waits"][0]
    if data is None:  # the case found: an int past the float range
        wait["timeout_left"] = 10**400
    else:
        field = data.draw(st.sampled_from([*document, *(f"waits.{k}" for k in wait), "(all)"]))
        value = data.draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.integers(min_value=10**300, max_value=10**400),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=8),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
        if field == "(all)":
            document = value
        elif field.startswith("waits."):
            wait[field.removeprefix("waits.")] = value
        else:
            document[field] = value
    error = outcome_of(lambda: kd.resume(json.dumps(document)))
    assert error is None or isinstance(error, InvalidArgumentError), repr(error)


def test_every_poll_policy_field_has_a_rule_here() -> None:
    """A field added to PollPolicy must be added to the property test's rules too."""
    assert set(POLICY_FIELDS) == {field.name for field in attrs.fields(PollPolicy)}
