"""Layer 4, loading: a checkpoint -> a loaded model on the chosen device, engine and dtype,
``DTYPE=auto``'s calibration and the verdicts it keeps."""
