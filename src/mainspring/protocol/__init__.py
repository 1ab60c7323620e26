"""The wire contract between an executor and an SDK, free of I/O.

Opcodes, header names, error codes, request/response messages, step-id hashing, memo
shapes and duration strings, as ``../shared/spec/protocol.md`` describes them. Both the SDK
and the engine depend on this package; it depends on nothing else of ours.
"""
