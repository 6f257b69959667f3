"""The Celery application and its worker entry points."""
