"""Celery tasks: thin, with stable explicit names; ids in, re-read, act.

Tasks never carry bot config (it is secret): only ids, intents and reason strings.
"""
