"""The Lambda's parts: batch decoding and checks, seq bookkeeping, AWS side effects."""

__all__: list[str] = []
