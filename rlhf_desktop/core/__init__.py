"""Pure rules and formats below services and tune: parse and export preference records
(formats), the pick rules (pick_rules), and the Bradley-Terry and leaderboard maths
(bradley_terry, leaderboard). No I/O, no Qt, no storage: core imports only
:mod:`rlhf_desktop.domain`, the standard library and numeric libraries (import-linter
contracts in pyproject.toml; tests/test_architecture.py)."""
