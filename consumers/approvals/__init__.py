"""Approvals: the federated approval policy (``policy``, ``federation``) and the pure routing
of a requisition through it (``routing``). Plain functions over plain data: no SQL, no Kafka."""
