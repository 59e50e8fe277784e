"""What ``briefcast up`` runs beside the flows: the Prefect server (``server``, its database
``prefect_db``), the supervisor itself (``up``: deployments, workers, automations), the
inbox watcher (``inbox``) and the recovery of crashed sends (``recover``)."""
