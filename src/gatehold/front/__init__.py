"""Client-facing transports: Streamable HTTP (both protocol eras) and stdio."""
