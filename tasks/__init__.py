"""Celery tasks: thin wrappers that call pipeline.steps and record outcomes."""
