"""The Gradio demo, shipped in the wheel as ``ccsc_plugin.demo`` (see ``ccsc_plugin.shipped``)."""
