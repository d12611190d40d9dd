"""What you use after a run: load and act, evaluate, videos and plots."""
