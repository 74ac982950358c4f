"""Confirmation training for the BERT space: a brief masked-LM pre-training of one network.

Why masked-LM and not the benchmark's ELECTRA replaced-token detection (``as_trained.md`` §3):
a confirmation run is a few hundred steps on a small corpus, and its loss must rank
architectures. MLM's held-out loss is the cross-entropy of the masked tokens under the network
alone, comparable across architectures trained with one recipe (the same masks, the same
vocabulary). ELECTRA's discriminator loss depends on its own generator (an H/4 copy of each
architecture, trained alongside), so two architectures' losses measure two different tasks;
the generator also doubles the code and adds a network's worth of compute for a signal that
ELECTRA's sample efficiency pays back only over long runs on large corpora. What is kept from
the benchmark: the network family (default "literal"; "as-trained" builds the network that was
pre-trained), the masking (15% of positions, 85% of them shown as [MASK]), the generator-style
tied MLM head, and AdamW with warm-up and linear decay (:mod:`.recipe`).

Modules: :mod:`.recipe` the settings, :mod:`.data` the splits and the token-id mapping (corpus
id ``t`` -> ``1 + t % 30520``; [MASK] is row 30521), :mod:`.mlm` the head, masking and
evaluation, :mod:`.loop` the training, :mod:`.checkpoints` checkpoints and progress files.
:data:`BERT_TRAINER` is the space's :class:`~nas_engine.spaces.Trainer`.
"""

from nas_engine.errors import TrainingConfigError
from nas_engine.spaces import Trainer
from nas_engine.training import resolve_training_device

from ..networks import MASK_TOKEN, WORD_ROWS, family_ids
from .checkpoints import TrainedBert, load_checkpoint, save_checkpoint
from .data import BertTrainingData, prepare_data
from .loop import learning_rate, steps_per_epoch, train_network, training_sizes
from .mlm import (
    MaskedLanguageModel,
    MaskedLMHead,
    build_model,
    evaluate,
    mask_tokens,
    sequences,
)
from .outcome import BertTrainingOutcome
from .recipe import BertTrainingRecipe

BERT_TRAINER = Trainer(
    recipe=BertTrainingRecipe,
    prepare_data=prepare_data,
    sizes=training_sizes,
    train=train_network,
)

__all__ = [
    "BERT_TRAINER",
    "MASK_TOKEN",
    "WORD_ROWS",
    "BertTrainingData",
    "BertTrainingOutcome",
    "BertTrainingRecipe",
    "MaskedLMHead",
    "MaskedLanguageModel",
    "TrainedBert",
    "TrainingConfigError",
    "build_model",
    "evaluate",
    "family_ids",
    "learning_rate",
    "load_checkpoint",
    "mask_tokens",
    "prepare_data",
    "resolve_training_device",
    "save_checkpoint",
    "sequences",
    "steps_per_epoch",
    "train_network",
    "training_sizes",
]
