"""The engine: event intake, trigger matching, the durable queue, the executor and storage.

Layers inside: ``store`` (durable state behind a small contract) → ``queue`` (due jobs) →
``executor`` (drives one job through a transport and records the answer) → ``engine``
(the embedded, in-process API).
"""
