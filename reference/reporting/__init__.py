"""What a run leaves for people: the run report and its pictures."""
