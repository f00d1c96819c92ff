"""The kubernetes client package, imported a module at a time.

`import kubernetes` runs package initialisers that import every API group (64 modules), every
typed model (694 modules) and every way to load a kubeconfig (google-auth, OAuth, YAML): 61 MB
of resident memory in each process before it does anything (measured: a bare interpreter
10.5 MB, after `import kubernetes.client` 71.6 MB). This controller never builds a typed model
(it reads raw JSON, worker/adapters/kube.py), calls two API groups, and in a cluster needs only
the in-cluster config. `install()`, called by a process's entry point before anything imports
kubernetes, registers the package modules (`kubernetes`, `kubernetes.client`, its `api` and
`models`, `kubernetes.config`) as lazy modules: the same names resolve to the same objects,
each imported from its own submodule on first use, as the initialisers name them. A name an
initialiser defines itself (not an import) loads that initialiser whole, so every attribute
still resolves.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

# `from kubernetes.client.api.core_v1_api import CoreV1Api` — every line of the initialisers
# that are made lazy (checked by tests/unit/worker/test_lazy_kube.py on the pinned version).
_IMPORT_LINE = re.compile(r"^from (kubernetes\.client(?:\.\w+)*) import (\w+)\s*$", re.M)
# `from .incluster_config import load_incluster_config`, `from .kube_config import (a,\n b)`
_RELATIVE_IMPORT = re.compile(r"^from \.(\w+) import (?:\(([\w\s,]*)\)|(\w+)\s*$)", re.M)
_VERSION_LINE = re.compile(r"^__version__ = \"([^\"]+)\"\s*$", re.M)
LAZY_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.api",
                 "kubernetes.client.models", "kubernetes.config")


class _LazyPackage(types.ModuleType):
    """A package whose initialiser's imports are done on first use of each name."""

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name)
        init = directory / "__init__.py"
        source = init.read_text(encoding="utf-8")
        self.__path__ = [str(directory)]
        self.__file__ = str(init)
        self.__package__ = name
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=str(init),
                                                       is_package=True)
        self.__spec__.submodule_search_locations = [str(directory)]
        version = _VERSION_LINE.search(source)
        if version:
            self.__version__ = version.group(1)
        self._the0_source = source
        self._the0_exports = {attr: module for module, attr in _IMPORT_LINE.findall(source)}
        for module, listed, single in _RELATIVE_IMPORT.findall(source):
            attrs = (a.strip() for a in (listed or single).split(","))
            self._the0_exports.update(dict.fromkeys(filter(None, attrs), f"{name}.{module}"))
        self._the0_loaded = False

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        where, submodule = self._the0_exports.get(attr), f"{self.__name__}.{attr}"
        if where is not None:
            value = getattr(importlib.import_module(where), attr)
        elif submodule in sys.modules or importlib.util.find_spec(submodule) is not None:
            value = importlib.import_module(submodule)
        else:
            value = self._load_whole(attr)
        setattr(self, attr, value)
        return value

    def _load_whole(self, attr: str) -> Any:
        if not self._the0_loaded:
            self._the0_loaded = True
            exec(compile(self._the0_source, self.__file__ or "", "exec"), self.__dict__)
        if attr in self.__dict__:
            return self.__dict__[attr]
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


def install() -> bool:
    """Registers the lazy packages; False (nothing done) when kubernetes is imported already."""
    if "kubernetes" in sys.modules:
        return False
    spec = importlib.util.find_spec("kubernetes")  # finds, does not run, the initialiser
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in LAZY_PACKAGES:
        directory = root.joinpath(*name.split(".")[1:])
        sys.modules[name] = _LazyPackage(name, directory)
    return True
