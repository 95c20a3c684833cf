"""Operations: ``gatectl`` and what technicians run (provision, selftest, status, audit,
firmware deploy)."""

__all__: list[str] = []
