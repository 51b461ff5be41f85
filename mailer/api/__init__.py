"""HTTP: the app factory, the public reader endpoints and the editors' API."""
