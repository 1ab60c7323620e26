"""``mainspring.django.serve(client, functions)``, as ``inngest.django``."""

from mainspring.sdk.serve.django import serve as serve
