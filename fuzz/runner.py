"""Start atheris on a harness: instrument the imported code, then fuzz with argv's options."""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    import atheris

    import stt_proto

    if stt_proto.COMPILED:
        print("fuzz: the per-packet core runs compiled, where atheris sees no coverage; set "
              "STT_PURE=1 to fuzz the sources coverage-guided", file=sys.stderr)
    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
