"""chaton's load generator and benchmark runner (``python -m bench``); not part of CI."""
