"""Running containers: the start sequence, the per-container monitor, stop, console, wait,
execute, and the cheap state query that lxpy-ls and lxpy-info use."""
