"""The HTTP server: the event API, app registration, and the read and control APIs."""
