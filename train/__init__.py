"""Training side of the pipeline: data import, training, evaluation, archiving."""
