"""The MLIC-KD-WSD Python library: datalists, data, proposals, nets, evaluation, pipeline."""
