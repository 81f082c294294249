"""Pure functions (numpy / torch) that the stages wrap. No model loading, no I/O."""
