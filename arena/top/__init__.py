"""The top floor: what a person runs, standing on everything below and imported by nothing below.

- cli/         `arena ...`: one thin module per subcommand (the installed command, arena.top.cli:main)
- bench/       `arena bench ...`: the benchmarks, the white-box minimum, toy models and fixtures
- referee.py   the organizer's reference evaluation (`arena referee`)
"""
