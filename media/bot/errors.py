"""The one error a bot raises."""

from __future__ import annotations


class BotError(Exception):
    """A failure with the protocol's error code (`unauthorized`, `not_found`...) or `unreachable`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
