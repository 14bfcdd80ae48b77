"""The chat: sending a turn's N replies (streamed), ranking them, the conversations, their
branches and the token count."""
