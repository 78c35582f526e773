"""Text classification (sentiment is this task with the labels negative/positive): batched."""

from app.tasks.base import Task
from app.tasks.classification.model import Classifier, Prediction
from contract import TEXT_CLASSIFICATION

TASK = Task(name=TEXT_CLASSIFICATION, loop="batch", create=Classifier)

__all__ = ["TASK", "Classifier", "Prediction"]
