"""``stt``: keys, file transfer and benchmarks.

Every command fails in one line on stderr with exit status 1 (2 for a usage error, 130 on Ctrl-C);
``stt --debug`` shows the traceback (see :mod:`stt_cli.errors`).
"""

from __future__ import annotations

import click

from stt_bench.alloc import tune_heap

from .bench_command import bench
from .commands import COMMANDS
from .errors import STTGroup
from .impair_command import impair

MiB = 1024 * 1024


@click.group(cls=STTGroup)
@click.version_option(package_name="stt-transport")
@click.option("--heap-tuning/--no-heap-tuning", default=None,
              help="Keep freed heap memory for reuse (glibc mallopt); see docs/tuning.md. "
                   "Default: on, except for `stt bench`, which measures processes that do "
                   "nothing special, as an application runs (--heap-tuning there gives a "
                   "figure labelled heap-tuned).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.pass_context
def main(ctx: click.Context, heap_tuning: bool | None, debug: bool) -> None:
    """STT: encrypted, multiplexed peer-to-peer transport."""
    if heap_tuning is None:  # the benchmark's default figures come from untuned processes
        heap_tuning = ctx.invoked_subcommand != "bench"
    ctx.obj = {"heap_tuned": tune_heap() if heap_tuning else False, "debug": debug}


for _command in COMMANDS:
    main.add_command(_command)
main.add_command(bench)
main.add_command(impair)


if __name__ == "__main__":
    main()
