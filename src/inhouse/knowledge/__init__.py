"""Knowledge: collections of the company's files, indexed for hybrid search under permissions."""
