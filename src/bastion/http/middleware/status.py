"""The response status seen on the way out, for middleware that reports requests."""

from __future__ import annotations

from bastion.types import Message, Send


class StatusWatch:
    """A ``send`` that passes every message on and remembers the response status.

    ``code`` stays 500 when the app raised before starting its response: the error
    middleware further in (or the server) answers such a request with a 500.
    """

    __slots__ = ("_send", "code")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)
