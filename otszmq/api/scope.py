"""What a caller may see: the caller of a request, and the SQL filter for stored items.

Every listing of stored items (EUDs, the CoT log, video feeds, ...) shows a caller only the
rows written to a channel its OUT groups read (TAK's rule, :meth:`Caller.may_read`); admins
see everything. Rows carry their channels in a ``groups`` column (:mod:`otszmq.store.groups`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import falcon
from peewee import Field, ModelSelect

from otszmq.api.caller import ANONYMOUS_CALLER, Caller
from otszmq.store.groups import meets_any

Query = TypeVar("Query", bound="ModelSelect[Any]")


def caller_of(req: falcon.Request) -> Caller:
    """The request's caller; the anonymous one when no authentication middleware set it.

    NOTE: the plain port runs no authentication, and OTS serves ``/Marti`` there as the
    anonymous channel: a request nobody vouched for is exactly that caller.
    """
    caller: Any = getattr(req.context, "caller", None)
    return caller if isinstance(caller, Caller) else ANONYMOUS_CALLER


def visible(query: Query, column: Field, caller: Caller) -> Query:
    """``query`` narrowed to the rows whose channels (``column``) the caller reads."""
    if caller.admin:
        return query
    filtered: Query = query.where(meets_any(column, caller.groups_out))
    return filtered


def require_user(caller: Caller, action: str) -> None:
    """403 unless the caller is a signed-in user (anonymous callers own no channels)."""
    if caller.via == "anonymous" or not caller.name:
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description=f"{action} needs a signed-in user (a client certificate or a token); "
            "an anonymous caller has no channels of its own",
        )
