"""Instance lists page by position, not by offset: the API's `next` and `previous` cursors
walk every instance once, in order, ties on the creation time included; counts are exact
under the threshold and marked estimated above it; the admin list pages with its counting
paginator, each page in the same few queries."""

from __future__ import annotations

import json
from base64 import urlsafe_b64encode
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from durable_workflows import client, counting
from durable_workflows.api import pagination
from durable_workflows.models import WorkflowInstance
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db

LIST = "/api/workflows/instances/"
ADMIN_LIST = "/admin/durable_workflows/workflowinstance/"


@pytest.fixture
def api():
    api_client = APIClient()
    api_client.force_login(staff_user("operator"))
    return api_client


def make(n: int, *, prefix: str = "i", tied: int = 3) -> list[str]:
    """`n` paused instances created in groups of `tied` at the same microsecond; their ids,
    in the list's order (newest first, then the larger id). Rows as a start leaves them,
    written at once: the lists read nothing else."""
    base = timezone.now() - timedelta(hours=1)
    WorkflowInstance.objects.bulk_create([
        WorkflowInstance(pk=f"{prefix}-{i:03d}", workflow="tests.nap", state="paused", input=["1h"],
                         created_at=base + timedelta(seconds=i // tied))
        for i in range(n)
    ])
    return [pk for pk in WorkflowInstance.objects.order_by("-created_at", "-pk").values_list("pk", flat=True)
            if pk.startswith(f"{prefix}-")]


def walk(api, link: str, direction: str) -> list[list[str]]:
    pages = []
    while link:
        response = api.get(link)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append([item["id"] for item in body["results"]])
        link = body[direction]
    return pages


def test_next_walks_every_instance_once_in_order_and_previous_walks_back(api):
    expected = make(14)
    pages = walk(api, f"{LIST}?page_size=4", "next")
    assert [len(p) for p in pages] == [4, 4, 4, 2]
    assert [pk for page in pages for pk in page] == expected
    last = api.get(f"{LIST}?page_size=4").json()
    while last["next"]:
        last = api.get(last["next"]).json()
    back = walk(api, last["previous"], "previous")
    assert back == pages[-2::-1]
    assert api.get(f"{LIST}?page_size=4").json()["previous"] is None


def test_pages_keep_their_filters_and_a_page_number_reads_the_first_pages(api):
    expected = make(7)
    client.start("tests.greet", "Ada", instance_id="done")
    pages = walk(api, f"{LIST}?state=paused&page_size=3", "next")
    assert [pk for page in pages for pk in page] == expected
    second = api.get(LIST, {"state": "paused", "page_size": 3, "page": 2}).json()
    assert [item["id"] for item in second["results"]] == expected[3:6]
    assert "page=" not in second["next"] and "state=paused" in second["next"]
    assert [item["id"] for item in api.get(second["previous"]).json()["results"]] == expected[:3]
    assert api.get(second["next"]).json()["results"][0]["id"] == expected[6]


def test_count_is_exact_under_the_threshold(api):
    make(5)
    for link in (f"{LIST}?page_size=2", api.get(f"{LIST}?page_size=2").json()["next"]):
        body = api.get(link).json()
        assert body["count"] == 5 and body["count_is_estimate"] is False


def test_count_past_the_threshold_is_marked_estimated(api, monkeypatch):
    make(12)
    monkeypatch.setattr(counting, "EXACT_UP_TO", 4)
    monkeypatch.setattr(counting, "COUNT_CAP", 8)  # where no planner estimates (SQLite)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {WorkflowInstance._meta.db_table}")
    body = api.get(LIST).json()
    assert body["count_is_estimate"] is True and body["count"] > 4
    assert len(body["results"]) == 12  # the page itself is never estimated
    filtered = api.get(LIST, {"state": "completed"}).json()
    assert filtered == {**filtered, "count": 0, "count_is_estimate": False}


def test_a_bad_cursor_is_a_404_that_says_so(api):
    make(2)

    def token(value: object) -> str:
        return urlsafe_b64encode(json.dumps(value).encode()).decode()

    now = timezone.now().isoformat()
    for cursor in ("zzz", "%%%", "é", token({"p": 1}), token([now, "i-001"]), token(["yesterday", "i-001", 0]),
                   token([now, 7, 0]), token([now, "nul\x00id", 0]), token([now, "i-001", 2]),
                   token([now[:19], "i-001", 0])):
        response = api.get(LIST, {"cursor": cursor})
        assert response.status_code == 404, cursor
        assert response.json()["detail"].startswith("Invalid cursor: not one this list gave out"), cursor


def test_page_numbers_past_the_first_pages_are_refused_with_a_pointer_to_next(api, monkeypatch):
    make(6)
    assert api.get(LIST, {"page": 9}).json()["detail"] == "Invalid page: page 9 is past the last page."
    monkeypatch.setattr(pagination, "OFFSET_UP_TO", 4)
    assert api.get(LIST, {"page_size": 2, "page": 3}).status_code == 200
    refused = api.get(LIST, {"page_size": 2, "page": 4})
    assert refused.status_code == 400
    assert "`next`" in refused.json()["page"][0] and "6 instances in" in refused.json()["page"][0]
    for page in ("0", "-1", "two", "last", "²"):
        response = api.get(LIST, {"page": page})
        assert response.status_code == 404 and "not a page number" in response.json()["detail"], page


def test_the_api_list_costs_the_same_queries_for_any_page(api):
    make(4, prefix="few")
    with CaptureQueriesContext(connection) as few:
        assert api.get(LIST).status_code == 200
    make(30, prefix="many")
    deep = api.get(f"{LIST}?page_size=10").json()["next"]
    with CaptureQueriesContext(connection) as many:
        assert api.get(deep).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_the_admin_list_pages_with_its_counting_paginator(admin_client, monkeypatch):
    expected = make(9)
    monkeypatch.setattr(admin.site._registry[WorkflowInstance], "list_per_page", 2)
    monkeypatch.setattr(counting, "DIRECT_OFFSET_UP_TO", 2)  # page 3 on: the page's ids first
    shown = []
    for number in range(1, 6):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(ADMIN_LIST, {"p": number})
        assert response.status_code == 200
        paginator = response.context["cl"].paginator
        assert isinstance(paginator, counting.EstimatingPaginator) and paginator.count == 9
        shown += [obj.pk for obj in response.context["cl"].result_list]
        if number == 1:
            first = len(queries.captured_queries)
        else:  # a deep page reads its ids, then its rows: one query more, whatever the rows
            assert len(queries.captured_queries) <= first + 1
    assert shown == expected


def test_the_browsable_api_links_the_next_page(api):
    make(3)
    text = api.get(f"{LIST}?page_size=2", HTTP_ACCEPT="text/html").content.decode()
    assert 'rel="next"' in text and "?cursor=" in text
