"""The SDK: client, function definitions, steps, parallel groups and the replay core.

Nothing here imports the engine: the SDK reaches an executor only through the call
request/response messages of :mod:`mainspring.protocol.messages`.
"""
