"""The benchmark functions of `bench/mainspring_workloads.py`, served over HTTP by Mainspring's
ASGI adapter (system "mainspring-http").

Run it with ``MAINSPRING_DEV=1`` and ``MAINSPRING_BASE_URL`` set to the server, then
``python -m uvicorn bench.http_apps.mainspring_app:app``; `bench/http_workloads.py` does that.
"""

from __future__ import annotations

import mainspring
from bench.functions import define
from mainspring.sdk.serve.asgi import serve

client = mainspring.Client(app_id="bench-http")
app = serve(client, define(client))
