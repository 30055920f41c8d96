"""Procurement: requisitions validated against the master data (``validation``, pure rules)
and the ``requisitions`` processor that applies them (``processor``)."""
