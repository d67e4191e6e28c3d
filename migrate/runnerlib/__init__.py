"""The migration runner's parts (migrate/runner.py is the entry point; docs/migrations.md).

exits: exit codes and the errors that carry them; output: log lines and redaction;
settings: the environment, bounded and validated; connection: connecting with TLS;
lock: the advisory lock and the watch on its session; child: the command's process; main: run().
Python standard library + psycopg 3 only: the whole folder is copied into the migrate image.
"""
