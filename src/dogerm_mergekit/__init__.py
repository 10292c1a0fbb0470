"""DogeRM merges for mergekit: a reward model merged with a domain language model."""
