"""Monitoring as code: the dashboard generator and the Prometheus config writer."""
