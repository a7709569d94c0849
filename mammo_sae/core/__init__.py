"""What every layer may use and that knows nothing of mammograms or SAEs: errors, atomic writes,
hashing and canonical JSON, AUROC / AUPRC, autocast choice, releasing memory-mapped pages, process
groups, checked weight files, and the machinery that turns a config dataclass into a command line."""
