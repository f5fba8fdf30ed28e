"""`rasa` as the project runs it: Rasa's own command line, without JAX in memory.

TensorFlow 2.12 depends on JAX and imports it at start-up for its TFLite converter, which
Rasa never uses. Measured on this machine: `import tensorflow` takes 609 MB resident with
JAX imported and 505 MB without, so every Rasa process carries ~105 MB for nothing.
Marking JAX unimportable before TensorFlow loads makes TensorFlow take its own
"JAX is not installed" path (`tensorflow/lite/python/util.py` catches the ImportError).

    python -m jmt.rasa_process run --enable-api ...   # same arguments as `rasa`
"""

from __future__ import annotations

import sys


def main() -> None:
    sys.modules.setdefault("jax", None)  # type: ignore[arg-type]  # `import jax` → ImportError
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
