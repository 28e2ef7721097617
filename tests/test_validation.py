"""Bad input is refused before anything is sent, with a typed error that quotes no secret."""

from __future__ import annotations

from typing import Any

import pytest
from kd_fakes import BASE, MockKooDrive

from koodrive_tasks import AppSignature, BearerToken, InvalidArgumentError, KooDriveClient
from koodrive_tasks.testing import VirtualClock


@pytest.mark.parametrize("kdstoken", [123, b"bytes", "kds-\udc00"])
async def test_a_kdstoken_that_cannot_be_sent_is_an_invalid_argument(
    mock: MockKooDrive, client: KooDriveClient, kdstoken: Any
) -> None:
    """Not a string, or not valid text: InvalidArgumentError at once, never TypeError."""
    with pytest.raises(InvalidArgumentError):
        client.wait_for_task("s", "t", kdstoken=kdstoken)
    with pytest.raises(InvalidArgumentError):
        await client.get_share_task("s", "t", kdstoken=kdstoken)
    assert not mock.requests


@pytest.mark.parametrize("token", ["SEKRET\n", "SEKRET\r\nX-Evil: 1", "SEK\x00RET"])
def test_a_token_no_header_can_carry_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="control character") as caught:
        BearerToken(token)
    assert "SEK" not in str(caught.value)


async def test_a_provider_token_with_a_newline_is_a_typed_error(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    async def provider() -> str:
        return "fresh-token\n"

    async with KooDriveClient(BASE, auth=BearerToken(provider), clock=clock) as kd:
        with pytest.raises(InvalidArgumentError, match="control character"):
            await kd.get_share_task("s", "t")


@pytest.mark.parametrize("field", ["app_id", "app_secret", "user_id"])
def test_app_signature_credentials_must_be_valid_text(field: str) -> None:
    values = {"app_id": "app", "app_secret": "s" * 32, "user_id": "user"}
    values[field] = "SECRET\udc00xyz"
    with pytest.raises(InvalidArgumentError, match=field) as caught:
        AppSignature(**values)
    assert "SECRET" not in str(caught.value)
