"""Files: safetensors checkpoints (nothing executes on load) and crash-safe atomic writes."""
