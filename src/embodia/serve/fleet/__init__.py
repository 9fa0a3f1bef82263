"""The fleet service: which robots exist, what skill version each runs, the data they send back."""
