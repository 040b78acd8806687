"""Asset cards of the plugin, installed as ``speechmapper_plugin.assets``."""
