"""beyondfit training: trainer, quality gate, reference bins and reproduction.

Entry points: ``python -m training.train`` and ``python -m training.reproduce RUN_ID``.
Submodules import MLflow lazily where they can; ``training.reference`` never does.
"""
