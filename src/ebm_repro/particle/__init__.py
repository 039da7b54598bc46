"""IGEBM §5 particle dynamics (experiment E10)."""
