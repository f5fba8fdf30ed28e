"""`jmt` — the command line of 警民通 for operators and trainers (train, run, evaluate,
validate), and the `jmt` console script."""
