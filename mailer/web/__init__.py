"""The web layer: the editors' interface (admin/), the Jinja2 page templates, the static
files, and the security headers every page carries."""
