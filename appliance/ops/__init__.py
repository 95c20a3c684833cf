"""Operations: ``gatectl`` and what technicians run (provision, selftest, status, audit)."""

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []
