"""One page of a listing: every paginated ``/api`` route answers the same shape.

``{"results": [...], "total": N, "page": P, "per_page": S}``; ``page`` and ``per_page`` come from
the query string (:func:`otszmq.api.params.page_params`), ``total`` counts every matching row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from peewee import ModelSelect

Item = Callable[[Any], dict[str, Any]]


def page_of(
    query: ModelSelect[Any], order: Sequence[Any], item: Item, page: int, per_page: int
) -> dict[str, Any]:
    """The ``page``-th page of ``query`` (already filtered), rows sorted by ``order``.

    ``order`` must end in a unique column (a uid, an id) so that a row never shows on two pages
    or on none.
    """
    total = query.count()
    rows = query.order_by(*order).paginate(page, per_page)
    return {"results": [item(row) for row in rows], "total": total, "page": page,
            "per_page": per_page}

