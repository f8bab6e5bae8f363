"""beyondfit model service: a FastAPI app that serves an MLflow-registered model."""
