"""Layers of keras_lossplus: penalty layers that call `add_loss`, and margin
heads. (Filled in by the penalty-layer and metric-learning work.)"""

__all__: list = []
