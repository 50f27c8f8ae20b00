"""The wire: transports carry bytes and framed lines for a session, and know nothing else."""
