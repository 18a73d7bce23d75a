"""The error tree drawn in julia.core.errors names every class it defines."""

from __future__ import annotations

import inspect
import re

from julia.core import errors


def test_every_error_class_is_drawn_in_the_tree() -> None:
    source = inspect.getsource(errors)
    # tree lines: in the module docstring ("    ├── Name") or a section comment ("#   └── Name")
    drawn = set(re.findall(r"^(?:#)?\s+(?:[│├└─ ]+)?([A-Z]\w+)\s", source, re.M))
    classes = {
        name for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.JuliaError)
    }  # fmt: skip
    assert classes - drawn == set()
