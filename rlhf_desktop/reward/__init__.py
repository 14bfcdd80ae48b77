"""The reward model: embeddings, TinyRewardModel (Bradley-Terry), training."""
