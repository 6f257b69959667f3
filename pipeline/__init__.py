"""sftrenew core: what a renewal is (inventory, certificates, parsers, plans, steps), no Celery inside."""
