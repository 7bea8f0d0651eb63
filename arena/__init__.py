"""The arena application, in floors (arrows point down only; tests/test_layout.py checks it):

- ground/   the ground floor every package stands on: the contract (the rules in code, numpy
            only), the wire format, the one inference path, the one gRPC client, the charging
            rule, malloc tuning. It imports nothing of ours but itself and `protos`.
- server/   a middle floor, beside `attackers`, `defenses` and `scoreboard`: the server, which
            serves and nothing else (see arena/server/__init__.py). It stands on ground/.
- top/      the top floor, which nothing imports: the command line (cli/), the benchmarks and
            their fixtures (bench/), the organizer's referee (referee.py).

The server process stays free of torch; CLI subcommands that need it import it lazily.
"""
