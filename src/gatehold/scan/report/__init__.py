"""Report formats: text (rich), JSON and SARIF 2.1.0."""
