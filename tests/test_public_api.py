"""The public API of ``supplybus``: ``__all__`` is exactly what the root module offers."""

from __future__ import annotations

from types import ModuleType

import supplybus


def test_every_name_in_all_exists_and_all_is_sorted() -> None:
    missing = [name for name in supplybus.__all__ if not hasattr(supplybus, name)]
    assert not missing, f"in __all__ but not defined: {missing}"
    assert supplybus.__all__ == sorted(supplybus.__all__)
    assert len(set(supplybus.__all__)) == len(supplybus.__all__)


def test_nothing_public_is_exported_by_accident() -> None:
    public = {
        name
        for name, value in vars(supplybus).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # submodules
    }
    assert public == set(supplybus.__all__), (
        "public names of supplybus/__init__.py must equal __all__: "
        f"not exported {sorted(public - set(supplybus.__all__))}, "
        f"exported but absent {sorted(set(supplybus.__all__) - public)}"
    )


def test_exported_errors_belong_to_the_one_hierarchy() -> None:
    for name in supplybus.__all__:
        value = getattr(supplybus, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, supplybus.SupplybusError), name
            assert value.__module__ == "supplybus.errors", name
