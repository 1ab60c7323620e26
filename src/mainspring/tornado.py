"""``mainspring.tornado.serve(app, client, functions)``, as ``inngest.tornado``."""

from mainspring.sdk.serve.tornado import serve as serve
