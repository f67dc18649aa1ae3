"""Alert intake: Alertmanager's webhook and a generic JSON form, routed by `runbooks/alerts.yml`."""
