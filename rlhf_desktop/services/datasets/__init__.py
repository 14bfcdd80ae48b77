"""The dataset: importing and exporting preference pairs, the dataset card and the export
folder."""
