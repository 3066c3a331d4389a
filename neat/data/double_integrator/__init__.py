"""Double-integrator control problems in a fixed answer format (`type: double_integrator`)."""
