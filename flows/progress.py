"""Progress display: a rich bar on a terminal, silence otherwise (CI logs stay clean)."""

from __future__ import annotations

import sys
from types import TracebackType


class Progress:
    """Context manager with ``update(done, total)``; draws only when stderr is a TTY."""

    def __init__(self, description: str, total: int, unit: str = "") -> None:
        self._description = description
        self._total = total
        self._unit = unit
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                self._unit,
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self._description, total=self._total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total or self._total)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
