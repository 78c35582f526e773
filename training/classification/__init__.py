"""Text classification: labelled-file data, the fine-tuning LightningModule, knowledge distillation."""
