"""A project URLconf with the admin only: neither the API nor the metrics mounted."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
