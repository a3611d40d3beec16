"""fanout stage."""
