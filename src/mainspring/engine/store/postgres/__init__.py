"""The PostgreSQL backend (issue 12): its schema, under numbered migrations (``migrate``).

The store itself is not here yet; the engine still refuses ``postgresql://`` URLs. Nothing
here imports psycopg until a function that needs it is called from :mod:`.migrate`.
"""
