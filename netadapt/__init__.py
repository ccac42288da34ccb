"""netadapt package."""
