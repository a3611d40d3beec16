"""Who is calling: the one identity every API route sees, whatever proved it.

Authentication middleware (a token on ``/api``, a client certificate on the HTTPS port, HTTP
Basic on the enrollment port) sets ``req.context.caller``; routes read it and never look at
headers or sockets themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from otszmq.users import ANON_GROUP

Via = Literal["token", "certificate", "basic", "anonymous"]


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    groups_in: frozenset[str]
    groups_out: frozenset[str]
    via: Via

    def may_read(self, groups: frozenset[str] | set[str] | tuple[str, ...]) -> bool:
        """TAK's rule for listings: something written to ``groups`` is visible to a caller
        whose OUT groups meet them; admins see everything."""
        return self.admin or not self.groups_out.isdisjoint(groups)


ANONYMOUS_CALLER: Final = Caller(
    "", False, frozenset({ANON_GROUP}), frozenset({ANON_GROUP}), "anonymous"
)
"""A caller on the plain port's ``/Marti`` routes, as OTS serves them: the anonymous channel."""
