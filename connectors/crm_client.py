"""The CRM over HTTP: one ``PUT``/``DELETE`` per call, every answer returned as data.

httpx does the HTTP (connection pooling, timeouts on connect/read/write/pool); this
module only shapes requests and turns whatever happens — an answer, a timeout, a
refused or dropped connection — into a :class:`Reply`. It decides nothing: what a
status means is ``operators/crm_delivery.py``'s business.

A lead's path names its tenant and its investor, ``/tenants/<tenant>/leads/<investor>``:
tenants share a CRM, and two tenants' ``inv-1`` are two leads. Each part is
percent-encoded whole (``safe=""``): an id such as ``../admin`` or ``a/b?x=1`` must
name one lead, never another URL on the CRM.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx


def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"esg-leads/{version('esg-leads')}"
    except PackageNotFoundError:  # running from a source tree
        return "esg-leads/0+unknown"


@dataclass(frozen=True, slots=True)
class Reply:
    method: str
    #: ``None``: no answer (timeout, refused, dropped); ``error`` says which.
    status: int | None
    retry_after: str | None = None
    #: The first bytes of the body, decoded leniently (for dead letters and logs).
    excerpt: str = ""
    error: str | None = None


class CrmClient:
    """A pooled HTTP client bound to one CRM base URL and token."""

    def __init__(self, base_url: str, token: str | None, timeout: float, max_connections: int,
                 excerpt_bytes: int = 256, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": user_agent(), "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._excerpt = excerpt_bytes
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            follow_redirects=False, transport=transport)

    @staticmethod
    def path(tenant: str, investor_id: str) -> str:
        """The lead's path, the tenant's and the investor's ids each percent-encoded whole.

        >>> CrmClient.path("acme", "../a b/c")
        '/tenants/acme/leads/..%2Fa%20b%2Fc'
        >>> CrmClient.path("../x", "inv-1")
        '/tenants/..%2Fx/leads/inv-1'
        """
        return f"/tenants/{quote(tenant, safe='')}/leads/{quote(investor_id, safe='')}"

    def put(self, tenant: str, investor_id: str, body: bytes, idempotency_key: str) -> Reply:
        return self._send("PUT", self.path(tenant, investor_id), body, idempotency_key)

    def delete(self, tenant: str, investor_id: str, idempotency_key: str) -> Reply:
        return self._send("DELETE", self.path(tenant, investor_id), None, idempotency_key)

    def _send(self, method: str, path: str, body: bytes | None, key: str) -> Reply:
        headers = {"Idempotency-Key": key}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            with self._client.stream(method, path, content=body,
                                     headers=headers) as response:
                excerpt = b""
                # Read no more of the body than the excerpt needs: a CRM answering
                # with megabytes must not cost us megabytes.
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= self._excerpt:
                        break
                return Reply(method, response.status_code, response.headers.get("retry-after"),
                             excerpt[:self._excerpt].decode("utf-8", "replace"))
        except httpx.TimeoutException as error:
            return Reply(method, None, error=f"timeout: {type(error).__name__}")
        except httpx.TransportError as error:
            return Reply(method, None, error=f"{type(error).__name__}: {error}"[:200])

    def close(self) -> None:
        self._client.close()
