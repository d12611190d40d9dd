"""What serves the meta tasks: datasets, the learned optimizer's evaluation and random search."""
