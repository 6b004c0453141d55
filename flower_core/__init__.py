"""flower_core: the transfer-learning engine behind the flower studio (no Streamlit here)."""

__version__ = "0.1.0"
