"""Scoring rules (docs/rules.md section 6) as pure functions, leaderboard tables and the HTML report.

Records in (`scoreboard.records`), ranked tables out (`scoreboard.scoring.leaderboard`), rendered
as text / JSON / CSV (`scoreboard.tables`) or as a self-contained HTML report (`scoreboard.report`,
figures in `scoreboard.plots`). No grpc, no torch, no store.
"""
