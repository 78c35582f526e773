"""One module per `python -m training <verb>`: each turns its typed arguments into calls of the library
(training.classification, training.language_model, training.export, training.trainer). No verb imports
another."""
