"""Fine-tuning engine: config, data profiles, engine, monitoring."""
