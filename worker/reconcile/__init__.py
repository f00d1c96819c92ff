"""The reconcile: one pass and one per-bot converge, written once for both kinds of bot.

Layering (import-linter keeps it): tasks and the events consumer → reconcile → runtime (what a
process holds) → adapters and settings → core (pure). `kind.py` is the protocol; `pods.py` and
`cronjobs.py` the two kinds, which never import each other.
"""
