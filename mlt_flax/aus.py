"""The Action Unit lists of every dataset: the one place they are defined.

Each tuple is in the dataset's own label order (the order of its label files); AU names are
``f"AU{n}"``. Label spaces, label-token mapping and reports all read from here.
"""

from typing import Sequence

# Aff-Wild2, ABAW3 AU track: the header of every challenge label file, in file order.
AFFWILD2 = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
# BP4D (FERA 2015 protocol): the 12 standard AUs.
BP4D = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
# DISFA: the 12 AUs it codes (intensity 0-5).
DISFA = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
# The 17-AU union used for BP4D + DISFA + Aff-Wild2 pretraining.
UNION17 = tuple(sorted(set(AFFWILD2) | set(BP4D) | set(DISFA)))

LABEL_SPACES = {
    "abaw3_au": AFFWILD2,
    "bp4d": BP4D,
    "disfa": DISFA,
    "union17": UNION17,
}


def names(aus: Sequence[int]) -> tuple[str, ...]:
  """AU numbers -> names, e.g. (1, 2) -> ('AU1', 'AU2')."""
  return tuple(f"AU{n}" for n in aus)


def label_space(name: str) -> tuple[int, ...]:
  """The AU numbers of a named label space ('abaw3_au', 'bp4d', 'disfa' or 'union17')."""
  if name not in LABEL_SPACES:
    raise ValueError(
        f"unknown label space {name!r}; expected one of {sorted(LABEL_SPACES)}")
  return LABEL_SPACES[name]
