"""Scoring rules (ARENA_RULES section 6) as pure functions, leaderboard tables and the HTML report.

Records in (`scoreboard.records`), ranked tables out (`scoreboard.scoring`). No grpc, no torch, no store.
"""
