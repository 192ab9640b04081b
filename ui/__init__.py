"""Streamlit glue shared by the pages: session defaults, the page list, memo, thumbnails."""
