"""Forward-only SQL migrations of the ``smpp`` schema, applied by ``correlation.migrate``.

Files are named ``NNNN_description.sql`` and run in version order, each in its own
transaction. Never edit a file once it has shipped: add the next one (the runner
refuses to run when an applied file's checksum changed).
"""
