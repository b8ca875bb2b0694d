"""The paper's recipes (YAML), shipped in the wheel as ``ccsc_plugin.recipes`` (see ``ccsc_plugin.shipped``)."""
