"""The chat page: the composer, the turn list, each turn's reply cards and label bar, the arena
header, and why the replies rank as they do."""
