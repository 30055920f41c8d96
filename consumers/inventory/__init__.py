"""Inventory processors."""
