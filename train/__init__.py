"""Training side: data, training loop, evaluation, publishing. Reads model/, never demo/."""
