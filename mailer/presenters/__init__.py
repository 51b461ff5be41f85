"""Rows as editors see them (the schemas' Public models), one module per resource: what
the editors' API answers and the admin pages show. No HTTP here."""
