"""The arena: candidate sources answering the same turn blind, and their battles."""
