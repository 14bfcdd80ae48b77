"""The reward model that ranks the replies: scoring, retraining in the background, its
versions, what it learned in words, and the transformers ranker beside it."""
