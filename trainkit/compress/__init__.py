"""Model compression: magnitude pruning (one-shot and gradual), int8 weight quantization,
knowledge distillation, and the compressed model file."""
