"""The lazily imported kubernetes package gives every name the real one gives (same objects),
while a worker process loads none of the typed models. Each side runs in its own interpreter:
a process can hold only one of the two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
WORKER_ENV = {"MONGO_URI": "mongodb://127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1",
              "MINIO_ENDPOINT": "127.0.0.1:1", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b",
              "FLOWER_BASIC_AUTH": "operator:" + "x7Qk2mZr9vLp4sWn"}


def _run(code: str, *, lazy: bool) -> dict[str, Any]:
    prelude = "from worker.lazy_kube import install\nassert install()\n" if lazy else ""
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, **WORKER_ENV, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# Every public name of the real initialisers, resolved, as "module.qualname" (or a repr).
RESOLVE_ALL = """
import json, re
from pathlib import Path
import kubernetes, kubernetes.client, kubernetes.client.api, kubernetes.client.models
line = re.compile(r"^from (kubernetes\\.client(?:\\.\\w+)*) import (\\w+)", re.M)
out = {}
for package in (kubernetes.client, kubernetes.client.api, kubernetes.client.models):
    names = line.findall(Path(package.__file__).read_text())
    for _, name in names:
        value = getattr(package, name)
        out[package.__name__ + "." + name] = value.__module__ + "." + value.__qualname__
    out[package.__name__ + " names"] = len(names)
for name in ("config", "watch", "stream", "__version__"):
    value = getattr(kubernetes, name)
    out["kubernetes." + name] = getattr(value, "__name__", value)
out["client.rest.ApiException"] = kubernetes.client.rest.ApiException.__qualname__
out["client.__version__"] = kubernetes.client.__version__
for name in ("load_kube_config", "load_incluster_config", "load_config", "ConfigException",
             "new_client_from_config_dict", "list_kube_config_contexts"):
    value = getattr(kubernetes.config, name)
    out["kubernetes.config." + name] = value.__module__ + "." + value.__qualname__
out["kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION"] = (
    kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION)
print(json.dumps(out))
"""


def test_every_name_resolves_to_what_the_real_package_gives() -> None:
    real, lazy = _run(RESOLVE_ALL, lazy=False), _run(RESOLVE_ALL, lazy=True)
    assert real["kubernetes.client.models names"] == 694  # the pinned client, all found
    assert lazy == real


def test_a_worker_process_loads_no_typed_model_and_uses_less_memory() -> None:
    worker = """
import json, re, sys
import worker.celery
worker.celery.app.loader.import_default_modules()
from worker.runtime import Runtime
from kubernetes import client, config
client.CoreV1Api, client.BatchV1Api, client.ApiClient, client.Configuration
config.load_incluster_config  # what a pod of the controller loads its credentials with
print(json.dumps({"models": sum(m.startswith("kubernetes.client.models.") for m in sys.modules),
                  "kubeconfig_loader": "kubernetes.config.kube_config" in sys.modules,
                  "apis": sorted(m for m in sys.modules if m.startswith("kubernetes.client.api.")),
                  # VmHWM, not ru_maxrss: that one keeps the parent's peak across exec
                  "rss_mb": int(re.search(r"VmHWM:\\s+(\\d+)",
                                          open("/proc/self/status").read())[1]) / 1024}))
"""
    # worker.celery installs the lazy package itself (the entry point's first import).
    lazy = _run(worker, lazy=False)
    assert lazy["models"] == 0 and lazy["kubeconfig_loader"] is False
    assert lazy["apis"] == ["kubernetes.client.api.batch_v1_api",
                            "kubernetes.client.api.core_v1_api"]
    eager = _run("import kubernetes\n" + worker, lazy=False)
    assert eager["models"] == 694 and eager["kubeconfig_loader"] is True
    assert eager["rss_mb"] - lazy["rss_mb"] > 25, (eager, lazy)


@pytest.mark.parametrize("entry", ["worker.celery", "worker.log_app", "worker.broker_app",
                                   "worker.flower_app", "worker.__main__"])
def test_every_entry_point_makes_the_package_lazy_before_it_is_imported(entry: str) -> None:
    # `celery -A <entry>` and `python -m worker` import the entry module first.
    found = _run(f"""
import json, sys, {entry}
print(json.dumps({{"lazy": type(sys.modules["kubernetes"]).__name__,
                  "models": sum(m.startswith("kubernetes.client.models.") for m in sys.modules)}}))
""", lazy=False)
    assert found == {"lazy": "_LazyPackage", "models": 0}
