"""Feature extraction: images -> backbone feature maps -> sampled tokens -> an activation store."""
