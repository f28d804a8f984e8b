"""Named dependencies handlers declare (``services``, ``caller``)."""

from __future__ import annotations

from litestar.di import NamedDependency

from automation_server.security.accounts import Caller
from automation_server.services import Services

ServicesDep = NamedDependency[Services]
CallerDep = NamedDependency[Caller]
