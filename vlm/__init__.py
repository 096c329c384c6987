"""The vision-language model trained on synth2 shards."""
