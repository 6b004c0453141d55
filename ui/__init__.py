"""Streamlit-only helpers shared by the pages: cached loaders, layout and widgets."""
