"""Real processes for the tests: an MLflow tracking server and the service under gunicorn."""
