"""The ``aiohttp.web`` application: share-task and job routes, package downloads, the stats route.

Every response carries a ``Date`` header from the injected clock.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

from aiohttp import web

from .._models import TaskStatus
from ._auth import Authenticator
from ._download import DownloadSigner, PackageLinks, build_zip
from ._faults import json_response
from ._http import Gate
from ._job_routes import JobRoutes
from ._service import TaskService
from ._share_routes import ShareRoutes

DOWNLOAD_PATH = "/download/{name}"
STATS_PATH = "/_emulator/stats"


class EmulatorApp:
    """The routes of one emulator, bound to its state.

    Args:
        service: The tasks, jobs, scripts, faults and counters.
        auth: The credential checker.
        signer: Signs package links.
        download_ttl_s: How long a package link stays valid.

    """

    def __init__(
        self,
        service: TaskService,
        auth: Authenticator,
        signer: DownloadSigner,
        download_ttl_s: float,
    ) -> None:
        self.service = service
        self.signer = signer
        gate = Gate(auth, service.stats)
        links = PackageLinks(signer, download_ttl_s)
        self.shares = ShareRoutes(service, gate, links)
        self.jobs = JobRoutes(service, gate, links)
        self._date_second = -1
        self._date_text = ""

    def build(self) -> web.Application:
        """Build the application with every route."""
        app = web.Application()
        self.shares.register(app)
        app.router.add_get(DOWNLOAD_PATH, self.download)
        app.router.add_get(STATS_PATH, self.stats)
        # After the fixed paths: the job detail's /koodrive/ose/v1/{job_id} matches any segment.
        self.jobs.register(app)
        app.on_response_prepare.append(self._stamp_date)
        return app

    async def _stamp_date(self, _: web.Request, response: web.StreamResponse) -> None:
        # A server's Date header shows its own clock; clients compare it with theirs to
        # detect skew, so it follows the injected wall clock, not the real one.
        now = self.service.clock.now()
        second = int(now.timestamp())
        if second != self._date_second:
            moment = datetime.fromtimestamp(second, timezone.utc)
            self._date_second, self._date_text = second, format_datetime(moment, usegmt=True)
        response.headers["Date"] = self._date_text

    async def download(self, request: web.Request) -> web.Response:
        """``GET /download/{id}.zip?expires=..&sig=..``: the package of a task or job."""
        service = self.service
        service.stats.requests["download"] += 1
        name = request.match_info["name"]
        if not name.endswith(".zip"):
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        task_id = name[: -len(".zip")]
        expires = request.query.get("expires", "")
        sig = request.query.get("sig", "")
        if not expires.isdigit() or not self.signer.verify(task_id, expires, sig):
            return _storage_error(
                403, "SignatureDoesNotMatch", "The request signature does not match."
            )
        if int(expires) < service.clock.now().timestamp():
            return _storage_error(403, "AccessDenied", "Request has expired.")
        task = service.lookup(task_id)
        if (
            task is None
            or task.snapshot(service.clock.monotonic()).status is not TaskStatus.COMPLETED
        ):
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        files = task.succeeded_file_ids()
        if not task.is_package or not files:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(
            body=build_zip(files),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{task.package_name}"'},
        )

    async def stats(self, _: web.Request) -> web.Response:
        """``GET /_emulator/stats``: the counters as JSON (emulator only, not authenticated).

        Not counted in :attr:`EmulatorStats.requests`, so watching a soak does not change it.
        """
        body = self.service.stats.to_dict()
        body["tasks_held"] = len(self.service.store)
        return json_response(200, body)


def _storage_error(status: int, code: str, message: str) -> web.Response:
    # The object store answers in XML, not in the API's JSON.
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=xml, content_type="application/xml")
