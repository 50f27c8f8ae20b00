"""chaton for browsers: HTTPS (h11) and IRC over WebSocket (wsproto) on the TLS listener."""
