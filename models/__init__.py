"""Learned ITM models: training (TensorFlow, optional ``train`` extra) and exported LiteRT artefacts."""
