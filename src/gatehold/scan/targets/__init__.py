"""Target loaders: each turns what the user named into ServerSnapshot objects."""
