"""Research analyses the experiments share; the engine imports nothing from here."""
