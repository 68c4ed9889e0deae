"""The local web demo (`omnisep demo`); Gradio is imported only when it starts."""
