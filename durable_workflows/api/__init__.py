"""The REST API: list, start, inspect and cancel instances over HTTP (Django REST framework).

Mount it with `path("api/workflows/", include("durable_workflows.api.urls"))`. The engine never
imports this package; it is glue over `durable_workflows.client`.
"""
