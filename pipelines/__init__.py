"""Atelier's model layer: catalog, model store, manager, placement and the runners.

Nothing here imports gradio, and nothing happens at import time.
"""

__version__ = "0.1.0"
