"""Page-number pagination for instance lists: `{"count", "next", "previous", "results"}`."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class InstancePagination(PageNumberPagination):
    """Fifty instances a page by default; `?page_size=` up to 500 for scripts that walk them."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
