"""The one command-line style of every benchmark script: absl flags, no positional arguments,
results as JSON.

A script defines its flags in a function and hands it to `run` under
`if __name__ == "__main__":`, so that importing the script (from another benchmark, or a
test) defines no flags, and `--help` lists its own flags under its docstring.
"""

import json
import pathlib

from absl import app


def run(define_flags, main) -> None:
  """Defines the flags, parses them, and calls main() (which reads absl.flags.FLAGS)."""
  define_flags()

  def checked(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    main()

  app.run(checked)


def write_json(path, result: dict) -> None:
  """`result` as indented JSON at `path` (NumPy scalars and the like written as floats)."""
  pathlib.Path(path).write_text(json.dumps(result, indent=1, default=float))
