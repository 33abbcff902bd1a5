"""An aiohttp access logger that never writes a token (EventSource clients send `?token=`)."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

TOKEN_IN_QUERY = re.compile(r"(?i)((?:^|[?&])token=)[^&]*")


def redact(path_qs: str) -> str:
    return TOKEN_IN_QUERY.sub(r"\1[redacted]", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            time * 1000,
        )
