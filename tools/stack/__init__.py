"""The real test stack: build pins, and a supervisor that runs the servers on 127.0.0.1.

Nothing here is part of the product. It starts kube-apiserver, kube-controller-manager,
kube-scheduler, etcd, kwok, FerretDB, versitygw, Redis and NATS as child processes, waits for
each to be ready, and stops exactly what it started.
"""
