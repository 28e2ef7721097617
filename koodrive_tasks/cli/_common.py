"""What the commands share: the client and renderer from flags and environment, following waits.

Both the share-task commands (``_main``) and the batch-job commands (``_jobs``) use
these; neither imports the other.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from yarl import URL

from .._auth import AppSignature, Auth, BearerToken
from .._client import KooDriveClient
from .._models import Ref
from ._outcomes import CommandError, classify, worst
from ._render import Bars, JsonLines, Renderer

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

# --- configuration ------------------------------------------------------------------------


def env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def make_auth(args: argparse.Namespace) -> Auth:
    """The auth scheme from flags, else from the environment."""
    token = args.token or env("KOODRIVE_TOKEN")
    app_id = args.app_id or env("KOODRIVE_APP_ID")
    app_secret = args.app_secret or env("KOODRIVE_APP_SECRET")
    user_id = args.user_id or env("KOODRIVE_USER_ID")
    if app_id or app_secret:
        if not (app_id and app_secret and user_id):
            raise CommandError(
                "an app signature needs KOODRIVE_APP_ID, KOODRIVE_APP_SECRET and KOODRIVE_USER_ID "
                "(or --app-id, --app-secret, --user-id)"
            )
        return AppSignature(app_id, app_secret, user_id)
    if token:
        return BearerToken(token)
    raise CommandError(
        "no credentials: set KOODRIVE_TOKEN, or KOODRIVE_APP_ID/KOODRIVE_APP_SECRET/KOODRIVE_USER_ID"
    )


def make_client(args: argparse.Namespace) -> KooDriveClient:
    """A client configured from flags and environment."""
    base_url = args.base_url or env("KOODRIVE_BASE_URL")
    if not base_url:
        raise CommandError("no endpoint: pass --base-url or set KOODRIVE_BASE_URL")
    insecure = args.insecure or URL(base_url).host in _LOOPBACK
    return KooDriveClient(
        base_url,
        auth=make_auth(args),
        language=args.language,
        request_timeout=args.request_timeout,
        allow_insecure_urls=insecure,
    )


def make_renderer(args: argparse.Namespace, out: TextIO) -> Renderer:
    """Bars on a terminal, JSON lines when asked or when stdout is not a terminal."""
    if args.json or not out.isatty():
        return JsonLines(out)
    return Bars(out)


async def follow(
    kd: KooDriveClient,
    refs: Sequence[Ref],
    renderer: Renderer,
    timeout: float | None,
    out: TextIO,
) -> int:
    """Show every task's progress until all end; print results; return the exit code.

    The download URL goes to stdout (the result), errors go to stderr as one line each
    whatever the output mode, so a pipe into ``jq`` still shows what went wrong.
    """
    refs = list(dict.fromkeys(refs))
    codes: list[int] = []
    results: list[tuple[Ref, str, dict[str, object]]] = []
    async with kd.watch_many(refs, timeout=timeout) as stream:
        async for ref, update in stream:
            renderer.update(ref.task_id, update)
        for ref in refs:
            word, code, detail = classify(stream.outcomes[ref])
            renderer.finish(ref.task_id, word, detail)
            codes.append(code)
            results.append((ref, word, detail))
    renderer.close()
    for ref, _word, detail in results:
        if "download_url" in detail and isinstance(renderer, Bars):
            prefix = "" if len(refs) == 1 else f"{ref.task_id} "
            out.write(f"{prefix}{detail['download_url']}\n")
        error = detail.get("error")
        if isinstance(error, dict):
            print(f"koodrive-tasks: {ref.task_id}: {error['message']}", file=sys.stderr)
    return worst(codes)
