"""Layer 6, model: what a checkpoint is and how its inputs and outputs are shaped, independent of
what runs it. Checkpoints and the hub, prompt templates, tokenization, tasks, scoring math, the CPU."""
