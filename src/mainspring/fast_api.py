"""``mainspring.fast_api.serve(app, client, functions)``, as ``inngest.fast_api``."""

from mainspring.sdk.serve.fastapi import serve as serve
