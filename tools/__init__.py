"""Developer tools of the repository (not shipped in the wheel): ``python -m tools.gen_docs``
writes the generated reference pages in ``docs/``."""

__all__: list[str] = []
