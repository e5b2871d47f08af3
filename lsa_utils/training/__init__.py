"""Stage 5, training: the one LoRA trainer every transfer method goes through, and its schedules."""
