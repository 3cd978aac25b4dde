"""The HTML pages' templates (`web/templates/`), loaded once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("web", "templates"), autoescape=True, auto_reload=False)


def render_page(template: str, **values: Any) -> str:
    return _templates().get_template(template).render(**values)
