"""Bounces and complaints: what receivers report about mail sent, and what it does to the
reader (classify.py decides, handling.py acts, the other modules read the reports)."""
