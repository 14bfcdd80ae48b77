"""Labels: recording picks, ties, rankings, edits and all-bad flags, undo, the labeling habits
and the label exports."""
