"""The web page for people: ``codemode-store serve`` (the optional ``web`` extra).

Sessions, a session's cells, a cell's history as a timeline, and one
observation with its images drawn; each page with a JSON twin and the CLI
command that shows the same. Built on Starlette (routing), uvicorn (the
server) and Jinja2 (templates, escaping everything by default), which only
the ``web`` extra installs: the library and the rest of the CLI never import
this package. See docs/web.md.
"""

from __future__ import annotations

from .app import Settings, create_app
from .server import serve

__all__ = ["Settings", "create_app", "serve"]
