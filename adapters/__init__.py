"""Adapters: the edges where supplybus meets Kafka, PostgreSQL and source/sink systems.

No vendor exception leaves this package: each adapter translates its client's errors into
the supplybus hierarchy (``supplybus.errors``).
"""
