"""rlhf-desktop: everyday chatting that doubles as RLHF preference labeling."""

__version__ = "0.1.0"
