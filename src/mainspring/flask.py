"""``mainspring.flask.serve(app, client, functions)``, as ``inngest.flask``."""

from mainspring.sdk.serve.flask import serve as serve
