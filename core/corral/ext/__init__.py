"""The extension API: the base classes plugins register (drivers and the loaded models they return,
download sources, exporters, GPU vendors, categories, formats, store layouts, routes) and the helpers
their methods share (backend checks, torch helpers).

Plugins reach these through :mod:`corral.api`; the core imports the submodules directly.
"""
