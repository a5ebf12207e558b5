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

MiB = 1024 * 1024


@click.group(cls=STTGroup)
@click.version_option(package_name="stt-transport")
@click.option("--heap-tuning/--no-heap-tuning", default=True, show_default=True,
              help="Keep freed heap memory for reuse (glibc mallopt); see docs/tuning.md.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.pass_context
def main(ctx: click.Context, heap_tuning: bool, debug: bool) -> None:
    """STT: encrypted, multiplexed peer-to-peer transport."""
    ctx.obj = {"heap_tuned": tune_heap() if heap_tuning else False, "debug": debug}


for _command in COMMANDS:
    main.add_command(_command)
main.add_command(bench)


if __name__ == "__main__":
    main()
