"""HTTP: the public reader endpoints and the editors' API (editors/, one router per resource)."""
