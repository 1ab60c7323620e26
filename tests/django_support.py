"""Django, set up once per test process for the tests of the Django serve adapter. Each
such test module is its own URLconf (``override_settings(ROOT_URLCONF=...)`` per test):
settings can be configured only once, by whichever module is imported first."""

from __future__ import annotations

import django
from django.conf import settings


def configure(urlconf: str) -> None:
    if settings.configured:
        return
    settings.configure(
        ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"],
        ROOT_URLCONF=urlconf,
        SECRET_KEY="test-only",
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        USE_TZ=True,
    )
    django.setup()
