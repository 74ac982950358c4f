"""The built-in search spaces: ``search_spaces.rnn`` (NAS-Bench-NLP cells) and
``search_spaces.bert`` (NAS-Bench-BERT encoders). Each package registers itself with the
engine's registry (:mod:`nas_engine.spaces`) when imported; the engine finds them by name."""
