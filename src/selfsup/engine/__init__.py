"""The training engine: one Lightning module for every method, optimisers, callbacks, runs."""
