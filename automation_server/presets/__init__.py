"""Presets: automations made from a template (prompt, plugin) instead of user code.

A preset request renders one reproducible tarball per variant, uploads it as
a blob and creates the automation through the ordinary service, so dispatch,
variant choice and experiments treat presets like any other automation.
"""
