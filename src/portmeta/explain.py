"""Plain-words explanation of what a plan does to one node (filled in below)."""

from __future__ import annotations

from typing import Any


def explain(*args: Any, **kwargs: Any) -> str:  # replaced in the next commit
    raise NotImplementedError
