"""The settings dialog and its candidate-sources editor."""
