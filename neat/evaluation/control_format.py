"""Format compliance and control cost of generated answers to double-integrator problems."""
