"""Evaluation of RBMs and DBNs (exact log Z for small models, AIS, monitors)."""
