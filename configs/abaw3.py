"""The paper's run (Tallec et al., ABAW3 2022): the MLT fine-tuned on Aff-Wild2.

An ImageNet InceptionV3 at 299x299 under the MLT head, trained on the ABAW3 AU track. The
library's defaults (`mlt_flax.configuration.defaults`) are this run, field by field;
docs/recipe.md lists every number with its source in the paper and the authors' code.
Smaller configs (demo, tiny) and the pretraining configs import this one and override a few
fields.
"""

import ml_collections

from mlt_flax import configuration


def get_config() -> ml_collections.ConfigDict:
  return configuration.defaults()
