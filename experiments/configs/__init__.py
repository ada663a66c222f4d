"""Experiment configs as code: base.py plus one file per dataset (Tables 2 and 3)."""
