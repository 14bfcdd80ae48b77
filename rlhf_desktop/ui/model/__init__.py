"""The model page: the reward model that ranks the replies (what it learned, its versions,
which reward model ranks) and the chat model (tune it, the arena's leaderboard)."""
